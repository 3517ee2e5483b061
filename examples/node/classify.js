// Classify pictures of any size (PNG, JPEG, WebP, TIFF, GIF, AVIF, HEIF) with an ONNX model exported by edgecnn. Needs
// only onnxruntime-node and sharp (libvips, prebuilt: no download script):
//   npm ci --ignore-scripts && node classify.js ../../exports/mnist_cnn_uint8_input.onnx photo.jpg [more ...] [--json]
// A phone photo is turned upright by its EXIF orientation first, as edgecnn predict and browsers do, when the model's
// description says so (`orientation: exif`).
// Everything the model needs — input size and channels, pixel scaling, class names, logits or probabilities, and
// the picture preprocessing (MNIST's digit recipe or a plain resize) — is read from the file's own metadata
// (../web/preprocess.js, shared with the browser page), so the same code serves any edgecnn model. Before classifying,
// the file's own golden inputs are run against the Keras answers and bound it carries (its edgecnn_selftest
// metadata): a file that fails them is not used (`--selftest` only runs that check).
const fs = require("fs");
const ort = require("onnxruntime-node");
const sharp = require("sharp");
const preprocess = require("../web/preprocess.js");

async function selftest(session, metadata, description) {
  const goldens = JSON.parse(metadata.edgecnn_selftest);
  const [count, ...shape] = goldens.shape;
  const pixels = Buffer.from(goldens.images, "base64");
  const size = shape.reduce((a, b) => a * b, 1);
  let worst = 0, agreeing = 0;
  for (let index = 0; index < count; index++) {
    const image = pixels.subarray(index * size, (index + 1) * size);
    const { type, data, dims } = preprocess.tensorFor(image, description, session.inputMetadata[0].type);
    const outputs = await session.run({ [session.inputNames[0]]: new ort.Tensor(type, data, dims) });
    const got = preprocess.probabilities(outputs[session.outputNames[0]].data, description);
    const expected = goldens.probabilities[index];
    got.forEach((value, k) => { worst = Math.max(worst, Math.abs(value - expected[k])); });
    if (got.indexOf(Math.max(...got)) === expected.indexOf(Math.max(...expected))) agreeing++;
  }
  const bound = goldens.max_abs_diff;
  const passed = agreeing === count && (bound === null || worst <= bound);
  const limit = bound === null ? "top-1 only" : `bound ${bound}`;
  return { passed, line: `selftest ${passed ? "PASS" : "FAIL"}: ${count} goldens, top-1 ${agreeing}/${count}, max |dp| ${worst.toExponential(2)} (${limit})` };
}

// The picture's RGBA bytes (8 bits per channel, sRGB), upright when the description asks for EXIF orientation; the
// first frame or page of an animated or multi-page file.
async function decode(file, description) {
  const picture = sharp(fs.readFileSync(file), { pages: 1 });
  const turned = description.orientation === "exif" ? picture.rotate() : picture;
  const { data, info } = await turned.toColourspace("srgb").ensureAlpha().raw({ depth: "uchar" }).toBuffer({ resolveWithObject: true });
  return { rgba: data, width: info.width, height: info.height };
}

async function main(args) {
  const asJson = args.includes("--json");
  const onlySelftest = args.includes("--selftest");
  const [modelPath, ...files] = args.filter((arg) => arg !== "--json" && arg !== "--selftest");
  const bytes = fs.readFileSync(modelPath);
  const metadata = preprocess.onnxMetadata(bytes);
  const description = preprocess.describe(metadata);
  const session = await ort.InferenceSession.create(bytes);
  const check = await selftest(session, metadata, description);
  console.error(check.line);
  if (!check.passed) process.exit(1);
  if (onlySelftest) return;
  for (const file of files) {
    const { rgba, width, height } = await decode(file, description);
    const pixels = preprocess.prepare(rgba, width, height, description);
    const { type, data, dims } = preprocess.tensorFor(pixels, description, session.inputMetadata[0].type);
    const outputs = await session.run({ [session.inputNames[0]]: new ort.Tensor(type, data, dims) });
    const scores = preprocess.probabilities(outputs[session.outputNames[0]].data, description);
    const best = scores.indexOf(Math.max(...scores));
    const label = description.class_names[best];
    console.log(asJson ? JSON.stringify({ file, label, index: best, probabilities: scores }) : `${file}: ${label} (p=${scores[best].toFixed(3)})`);
  }
}

main(process.argv.slice(2)).catch((error) => { console.error(`error: ${error.message}`); process.exit(1); });
