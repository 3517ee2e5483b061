// What `edgecnn predict` does to a picture before the model sees it, read from the model's description (the
// `edgecnn_description` metadata every exported file carries). Works in the browser (window.EdgecnnPreprocess) and
// in Node.js (require("./preprocess.js")).
// - digit recipe (`preprocess: digit`): grayscale (ITU-R 601 luma in integers, as Pillow's convert("L")), ink measured
//   from the paper's level (the border's median; a light paper means dark ink), faint pixels dropped (< 20% of the
//   brightest), cropped to the ink, fitted into 20x20 with an area-weighted resample (float64, summed in the same order
//   as edgecnn's numpy code, rounded as floor(x + 0.5)) and centred by integer mass in 28x28 — the same pixels as
//   predict — then brought to the model's size and channels;
// - resize recipe (`preprocess: resize`): the whole picture in gray or RGB, area-resampled to the model's size.
// `modelInput` applies the description's scaling for float-input files; `probabilities` a softmax for logits models;
// `onnxMetadata` reads an ONNX file's metadata_props straight from its protobuf bytes (the ONNX Runtime JavaScript
// API does not expose them).
(function (root, factory) {
  if (typeof module === "object" && module.exports) module.exports = factory();
  else root.EdgecnnPreprocess = factory();
})(typeof self !== "undefined" ? self : this, function () {
  const FIXED_SCALING = { unit: [0, 255], raw: [0, 1], symmetric: [127.5, 127.5] };
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

  // RGBA bytes -> (height x width x channels) pixels: gray as Pillow's luma, or RGB; transparency over white.
  function pixelsFromRGBA(rgba, width, height, channels) {
    if (channels === 1) return grayFromRGBA(rgba, width, height);
    const rgb = new Uint8Array(width * height * 3);
    for (let i = 0; i < width * height; i++) {
      const a = rgba[i * 4 + 3];
      for (let c = 0; c < 3; c++) {
        const v = rgba[i * 4 + c];
        rgb[i * 3 + c] = a === 255 ? v : Math.floor((v * a + 255 * (255 - a)) / 255 + 0.5);
      }
    }
    return rgb;
  }

  // (height x width x channels) pixels -> (outHeight x outWidth x channels), area-weighted like edgecnn's resize.
  function resizeArea(pixels, height, width, channels, outHeight, outWidth) {
    if (height === outHeight && width === outWidth) return Uint8Array.from(pixels);
    const out = new Uint8Array(outHeight * outWidth * channels);
    for (let c = 0; c < channels; c++) {
      const plane = new Uint8Array(height * width);
      for (let i = 0; i < height * width; i++) plane[i] = pixels[i * channels + c];
      const resized = resample(plane, height, width, outHeight, outWidth);
      for (let y = 0; y < outHeight; y++) for (let x = 0; x < outWidth; x++) {
        out[(y * outWidth + x) * channels + c] = Math.min(255, Math.max(0, Math.floor(resized[y][x] + 0.5)));
      }
    }
    return out;
  }

  // RGBA bytes of a picture -> the (H x W x C) uint8 pixels the described model takes.
  function prepare(rgba, width, height, description) {
    const { height: outHeight, width: outWidth, channels } = description;
    if (description.preprocess === "digit") {
      const digit = toMnist(grayFromRGBA(rgba, width, height), width, height);
      const repeated = new Uint8Array(SIZE * SIZE * channels);
      for (let i = 0; i < SIZE * SIZE; i++) for (let c = 0; c < channels; c++) repeated[i * channels + c] = digit[i];
      return resizeArea(repeated, SIZE, SIZE, channels, outHeight, outWidth);
    }
    return resizeArea(pixelsFromRGBA(rgba, width, height, channels), height, width, channels, outHeight, outWidth);
  }

  // uint8 pixels (H x W x C) -> the model's float input: (pixel - offset) / divisor per channel.
  function modelInput(pixels, description) {
    const channels = description.channels;
    const [offsets, divisors] = description.scaling === "mean-std"
      ? [description.mean, description.std]
      : [Array(channels).fill(FIXED_SCALING[description.scaling][0]), Array(channels).fill(FIXED_SCALING[description.scaling][1])];
    return Float32Array.from(pixels, (v, i) => (v - offsets[i % channels]) / divisors[i % channels]);
  }

  function probabilities(outputs, description) {
    const values = Array.from(outputs);
    if (description.output === "probabilities") return values;
    const top = Math.max(...values);
    const exps = values.map((v) => Math.exp(v - top));
    const sum = exps.reduce((a, b) => a + b, 0);
    return exps.map((v) => v / sum);
  }

  // ONNX ModelProto bytes -> its metadata_props (field 14: key = 1, value = 2) as an object.
  function onnxMetadata(bytes) {
    const data = bytes instanceof Uint8Array ? bytes : new Uint8Array(bytes);
    const decoder = new TextDecoder();
    function varint(state) {
      let result = 0, shift = 0, byte;
      do { byte = data[state.at++]; result += (byte & 0x7f) * 2 ** shift; shift += 7; } while (byte & 0x80);
      return result;
    }
    function fields(start, end, visit) {
      const state = { at: start };
      while (state.at < end) {
        const tag = varint(state), number = Math.floor(tag / 8), wire = tag % 8;
        if (wire === 0) varint(state);
        else if (wire === 1) state.at += 8;
        else if (wire === 5) state.at += 4;
        else if (wire === 2) { const length = varint(state); visit(number, state.at, state.at + length); state.at += length; }
        else throw new Error("not an ONNX model (unexpected protobuf wire type)");
      }
    }
    const metadata = {};
    fields(0, data.length, (number, start, end) => {
      if (number !== 14) return;
      let key = "", value = "";
      fields(start, end, (inner, from, to) => {
        if (inner === 1) key = decoder.decode(data.subarray(from, to));
        if (inner === 2) value = decoder.decode(data.subarray(from, to));
      });
      metadata[key] = value;
    });
    return metadata;
  }

  function describe(metadata) {
    if (!metadata.edgecnn_description) throw new Error("the model carries no edgecnn_description metadata (not exported by edgecnn)");
    return JSON.parse(metadata.edgecnn_description);
  }

  // The input tensor's data and dims for one image, as the file takes it: `inputType` is the session's own input
  // type (session.inputMetadata[0].type), "uint8" for raw pixels (the graph scales them), else scaled floats.
  function tensorFor(pixels, description, inputType) {
    const { height, width, channels } = description;
    if (inputType === "uint8") return { type: "uint8", data: Uint8Array.from(pixels), dims: channels === 1 ? [1, height, width] : [1, height, width, 3] };
    return { type: "float32", data: modelInput(pixels, description), dims: [1, height, width, channels] };
  }

  return { SIZE, BlankImageError, grayFromRGBA, toMnist, pixelsFromRGBA, resizeArea, prepare, modelInput, probabilities, onnxMetadata, describe, tensorFor };
});
