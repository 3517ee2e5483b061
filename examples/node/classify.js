// Classify 28x28 digit PNGs with edgecnn's uint8-input ONNX model. Needs only onnxruntime-node and pngjs:
//   npm install --ignore-scripts && node classify.js ../../exports/mnist_cnn_uint8_input.onnx digit.png [more.png ...]
// The model takes raw grayscale pixels (uint8, [batch, 28, 28], white digit on black) and returns
// `probabilities` [batch, 10]: the scaling to [0, 1] is inside the graph, so there is no preprocessing here.
const fs = require("fs");
const ort = require("onnxruntime-node");
const { PNG } = require("pngjs");

function grayPixels(file) {
  const png = PNG.sync.read(fs.readFileSync(file));
  if (png.width !== 28 || png.height !== 28) throw new Error(`${file}: expected 28x28, got ${png.width}x${png.height}`);
  const gray = new Uint8Array(28 * 28);
  for (let i = 0; i < gray.length; i++) {
    const [r, g, b] = png.data.subarray(i * 4, i * 4 + 3);
    gray[i] = Math.round(0.299 * r + 0.587 * g + 0.114 * b);
  }
  return gray;
}

async function main([modelPath, ...files]) {
  const session = await ort.InferenceSession.create(modelPath);
  for (const file of files) {
    const input = new ort.Tensor("uint8", grayPixels(file), [1, 28, 28]);
    const { probabilities } = await session.run({ image: input });
    const scores = Array.from(probabilities.data);
    const digit = scores.indexOf(Math.max(...scores));
    console.log(`${file}: ${digit} (p=${scores[digit].toFixed(3)})`);
  }
}

main(process.argv.slice(2)).catch((error) => { console.error(`error: ${error.message}`); process.exit(1); });
