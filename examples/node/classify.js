// Classify PNG pictures of any size with an ONNX model exported by edgecnn. Needs only onnxruntime-node and pngjs:
//   npm ci --ignore-scripts && node classify.js ../../exports/mnist_cnn_uint8_input.onnx digit.png [more.png ...] [--json]
// Everything the model needs — input size and channels, pixel scaling, class names, logits or probabilities, and
// the picture preprocessing (MNIST's digit recipe or a plain resize) — is read from the file's own metadata
// (../web/preprocess.js, shared with the browser page), so the same code serves any edgecnn model.
const fs = require("fs");
const ort = require("onnxruntime-node");
const { PNG } = require("pngjs");
const preprocess = require("../web/preprocess.js");

async function main(args) {
  const asJson = args.includes("--json");
  const [modelPath, ...files] = args.filter((arg) => arg !== "--json");
  const bytes = fs.readFileSync(modelPath);
  const description = preprocess.describe(preprocess.onnxMetadata(bytes));
  const session = await ort.InferenceSession.create(bytes);
  for (const file of files) {
    const png = PNG.sync.read(fs.readFileSync(file));
    const pixels = preprocess.prepare(png.data, png.width, png.height, description);
    const { type, data, dims } = preprocess.tensorFor(pixels, description, session.inputMetadata[0].type);
    const outputs = await session.run({ [session.inputNames[0]]: new ort.Tensor(type, data, dims) });
    const scores = preprocess.probabilities(outputs[session.outputNames[0]].data, description);
    const best = scores.indexOf(Math.max(...scores));
    const label = description.class_names[best];
    console.log(asJson ? JSON.stringify({ file, label, index: best, probabilities: scores }) : `${file}: ${label} (p=${scores[best].toFixed(3)})`);
  }
}

main(process.argv.slice(2)).catch((error) => { console.error(`error: ${error.message}`); process.exit(1); });
