// MNIST-style preprocessing, the same steps `edgecnn predict` takes, written to give the same pixels:
// grayscale (ITU-R 601 luma in integers, as Pillow's convert("L")), ink measured from the paper's level (the border's
// median; a light paper means dark ink), drop faint pixels (< 20% of the brightest), crop to the ink, fit into 20x20 with an area-weighted
// resample (float64, summed in the same order as edgecnn's numpy code, rounded as floor(x + 0.5)), and centre by
// integer mass in 28x28. A 28x28 image on a dark background is already MNIST-style and is used as it is.
// Works in the browser (window.MnistPreprocess) and in Node.js (require("./mnist.js")).
(function (root, factory) {
  if (typeof module === "object" && module.exports) module.exports = factory();
  else root.MnistPreprocess = factory();
})(typeof self !== "undefined" ? self : this, function () {
  const SIZE = 28;
  const BOX = 20;
  const INK_THRESHOLD = 0.2;
  const LIGHT_BACKGROUND = 128;

  class BlankImageError extends Error {}

  // RGBA bytes (canvas ImageData, pngjs) -> gray bytes; transparent pixels are composited over white first.
  function grayFromRGBA(rgba, width, height) {
    const gray = new Uint8Array(width * height);
    for (let i = 0; i < gray.length; i++) {
      let [r, g, b] = [rgba[i * 4], rgba[i * 4 + 1], rgba[i * 4 + 2]];
      const a = rgba[i * 4 + 3];
      if (a !== 255) [r, g, b] = [r, g, b].map((c) => Math.floor((c * a + 255 * (255 - a)) / 255 + 0.5));
      gray[i] = (r * 19595 + g * 38470 + b * 7471 + 0x8000) >> 16;
    }
    return gray;
  }

  function borderLevel(gray, width, height) {
    const border = [];
    for (let x = 0; x < width; x++) border.push(gray[x], gray[(height - 1) * width + x]);
    for (let y = 0; y < height; y++) border.push(gray[y * width], gray[y * width + width - 1]);
    border.sort((p, q) => p - q);
    const middle = Math.floor(border.length / 2);
    return border.length % 2 ? border[middle] : (border[middle - 1] + border[middle]) / 2;
  }

  // (sizeOut x sizeIn) weights: how much of each input pixel each output pixel covers.
  function areaWeights(sizeIn, sizeOut) {
    const scale = sizeIn / sizeOut;
    const weights = [];
    for (let j = 0; j < sizeOut; j++) {
      const start = j * scale;
      const row = new Float64Array(sizeIn);
      for (let i = 0; i < sizeIn; i++) row[i] = Math.max(Math.min(start + scale, i + 1) - Math.max(start, i), 0) / scale;
      weights.push(row);
    }
    return weights;
  }

  // weights (out x n) times values (n rows x cols), summed over n in ascending order, as edgecnn's numpy loop does.
  function accumulate(weights, values, cols) {
    const out = weights.map(() => new Float64Array(cols));
    for (let i = 0; i < values.length; i++) {
      for (let j = 0; j < weights.length; j++) {
        const w = weights[j][i];
        for (let k = 0; k < cols; k++) out[j][k] += w * values[i][k];
      }
    }
    return out;
  }

  function transpose(rows, cols) {
    return Array.from({ length: cols }, (_, k) => Float64Array.from(rows, (row) => row[k]));
  }

  function resample(image, height, width, outHeight, outWidth) {
    const rows = Array.from({ length: height }, (_, y) => Float64Array.from(image.subarray(y * width, (y + 1) * width)));
    const tall = accumulate(areaWeights(height, outHeight), rows, width);
    return transpose(accumulate(areaWeights(width, outWidth), transpose(tall, width), outHeight), outHeight);
  }

  function centerByMass(canvas) {
    let total = 0, rowMoment = 0, columnMoment = 0;
    for (let y = 0; y < SIZE; y++) for (let x = 0; x < SIZE; x++) {
      const v = canvas[y * SIZE + x];
      total += v; rowMoment += y * v; columnMoment += x * v;
    }
    if (total === 0) return canvas;
    const dy = Math.floor((SIZE - 1) / 2 - rowMoment / total + 0.5);
    const dx = Math.floor((SIZE - 1) / 2 - columnMoment / total + 0.5);
    const shifted = new Uint8Array(SIZE * SIZE);
    for (let y = 0; y < SIZE; y++) for (let x = 0; x < SIZE; x++) {
      const [sy, sx] = [y - dy, x - dx];
      if (sy >= 0 && sy < SIZE && sx >= 0 && sx < SIZE) shifted[y * SIZE + x] = canvas[sy * SIZE + sx];
    }
    return shifted;
  }

  // gray bytes of any size -> 784 MNIST-style pixels (white digit on black, row-major).
  function toMnist(gray, width, height) {
    if (width === SIZE && height === SIZE && borderLevel(gray, width, height) < LIGHT_BACKGROUND) return Uint8Array.from(gray);
    const level = Math.floor(borderLevel(gray, width, height)); // the paper; ink is how far a pixel stands out from it
    const ink = Uint8Array.from(gray, (v) => Math.min(255, Math.max(0, level >= LIGHT_BACKGROUND ? level - v : v - level)));
    const brightest = Math.max(1, ink.reduce((m, v) => Math.max(m, v), 0));
    let [top, bottom, left, right] = [height, -1, width, -1];
    for (let y = 0; y < height; y++) for (let x = 0; x < width; x++) {
      const i = y * width + x;
      if (ink[i] < INK_THRESHOLD * brightest) ink[i] = 0;
      if (ink[i]) [top, bottom, left, right] = [Math.min(top, y), Math.max(bottom, y), Math.min(left, x), Math.max(right, x)];
    }
    if (bottom < 0) throw new BlankImageError("image is blank: no digit strokes found");
    const [cropHeight, cropWidth] = [bottom - top + 1, right - left + 1];
    const cropped = new Uint8Array(cropHeight * cropWidth);
    for (let y = 0; y < cropHeight; y++) cropped.set(ink.subarray((top + y) * width + left, (top + y) * width + right + 1), y * cropWidth);
    const scale = BOX / Math.max(cropHeight, cropWidth);
    const fitHeight = Math.max(1, Math.floor(cropHeight * scale + 0.5));
    const fitWidth = Math.max(1, Math.floor(cropWidth * scale + 0.5));
    const fitted = resample(cropped, cropHeight, cropWidth, fitHeight, fitWidth);
    const canvas = new Uint8Array(SIZE * SIZE);
    const [y0, x0] = [Math.floor((SIZE - fitHeight) / 2), Math.floor((SIZE - fitWidth) / 2)];
    for (let y = 0; y < fitHeight; y++) for (let x = 0; x < fitWidth; x++) {
      canvas[(y0 + y) * SIZE + x0 + x] = Math.min(255, Math.max(0, Math.floor(fitted[y][x] + 0.5)));
    }
    return centerByMass(canvas);
  }

  return { SIZE, BlankImageError, grayFromRGBA, toMnist };
});
