// Classify digit PNGs of any size with edgecnn's uint8-input ONNX model. Needs only onnxruntime-node and pngjs:
//   npm ci --ignore-scripts && node classify.js ../../exports/mnist_cnn_uint8_input.onnx digit.png [more.png ...]
// Each image gets `edgecnn predict`'s preprocessing (../web/mnist.js, shared with the browser page): gray, light
// background inverted, cropped to the ink, fitted into 20x20, centred by mass in 28x28. The model takes those raw
// pixels (uint8, [batch, 28, 28]) and returns `probabilities` [batch, 10]; the scaling to [0, 1] is inside the graph.
const fs = require("fs");
const ort = require("onnxruntime-node");
const { PNG } = require("pngjs");
const { grayFromRGBA, toMnist } = require("../web/mnist.js");

function mnistPixels(file) {
  const png = PNG.sync.read(fs.readFileSync(file));
  return toMnist(grayFromRGBA(png.data, png.width, png.height), png.width, png.height);
}

async function main([modelPath, ...files]) {
  const session = await ort.InferenceSession.create(modelPath);
  for (const file of files) {
    const input = new ort.Tensor("uint8", mnistPixels(file), [1, 28, 28]);
    const { probabilities } = await session.run({ image: input });
    const scores = Array.from(probabilities.data);
    const digit = scores.indexOf(Math.max(...scores));
    console.log(`${file}: ${digit} (p=${scores[digit].toFixed(3)})`);
  }
}

main(process.argv.slice(2)).catch((error) => { console.error(`error: ${error.message}`); process.exit(1); });
