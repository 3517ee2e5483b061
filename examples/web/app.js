// The page: an edgecnn ONNX model in onnxruntime-web (WASM files from this folder, no CDN). Everything about the
// model — input size and channels, scaling, class names, logits or probabilities, the picture preprocessing — comes
// from the file's own metadata. A drawing pad for 1-channel (digit) models, and an image file chooser for any model.
// window.edgecnn for automation: `ready` (resolves to the model's description once loaded), `classify(pixels)` for
// the model's own H x W x C uint8 pixels, `classifyImage(url)` for a picture, `classifyCanvas()` for what is drawn.
// The model is ?model=URL, by default the uint8-input ONNX file beside the page; a float-input file works too.
(function () {
  const params = new URLSearchParams(window.location.search);
  const modelUrl = params.get("model") || "mnist_cnn_uint8_input.onnx";
  const pad = document.getElementById("pad");
  const context = pad.getContext("2d", { willReadFrequently: true });
  const status = document.getElementById("status");
  const prep = window.EdgecnnPreprocess;

  ort.env.wasm.wasmPaths = new URL("node_modules/onnxruntime-web/dist/", window.location.href).href;
  ort.env.wasm.numThreads = 1; // threads need cross-origin isolation headers, which a plain static server does not send

  function clearPad() {
    context.fillStyle = "#fff";
    context.fillRect(0, 0, pad.width, pad.height);
    document.getElementById("result").textContent = "";
    document.getElementById("bars").replaceChildren();
  }

  async function loadModel() {
    const response = await fetch(modelUrl);
    if (!response.ok) throw new Error(`HTTP ${response.status}`);
    const bytes = new Uint8Array(await response.arrayBuffer());
    const description = prep.describe(prep.onnxMetadata(bytes));
    const session = await ort.InferenceSession.create(bytes, { executionProviders: ["wasm"] });
    const { height, width, channels } = description;
    status.textContent = `model ${modelUrl} loaded: ${height}x${width}x${channels}, ${description.class_names.length} classes`;
    document.getElementById("drawing").hidden = channels !== 1;
    return { session, description };
  }

  const model = loadModel().catch((error) => {
    status.textContent = `cannot load ${modelUrl}: ${error.message}`;
    throw error;
  });

  async function classify(pixels) {
    const { session, description } = await model;
    const { height, width, channels } = description;
    if (!(pixels instanceof Uint8Array) || pixels.length !== height * width * channels) {
      throw new Error(`classify expects a Uint8Array of ${height * width * channels} pixels (${height}x${width}x${channels})`);
    }
    const { type, data, dims } = prep.tensorFor(pixels, description, session.inputMetadata[0].type);
    const output = await session.run({ [session.inputNames[0]]: new ort.Tensor(type, data, dims) });
    const probabilities = prep.probabilities(output[session.outputNames[0]].data, description);
    const index = probabilities.indexOf(Math.max(...probabilities));
    return { label: description.class_names[index], index, probabilities };
  }

  async function classifyRGBA(rgba, width, height) {
    const { description } = await model;
    const result = await classify(prep.prepare(rgba, width, height, description));
    show(result, description);
    return result;
  }

  function classifyCanvas() {
    const { data } = context.getImageData(0, 0, pad.width, pad.height);
    return classifyRGBA(data, pad.width, pad.height);
  }

  // The browser turns a phone photo upright by its EXIF orientation as it decodes it (CSS image-orientation:
  // from-image, the default), as edgecnn predict does for files whose description says `orientation: exif`: the
  // pixels drawn here are upright already and are not turned again.
  async function classifyImage(url) {
    const image = new Image();
    image.src = url;
    await image.decode();
    const canvas = document.createElement("canvas");
    [canvas.width, canvas.height] = [image.naturalWidth, image.naturalHeight];
    const drawn = canvas.getContext("2d");
    drawn.drawImage(image, 0, 0);
    return classifyRGBA(drawn.getImageData(0, 0, canvas.width, canvas.height).data, canvas.width, canvas.height);
  }

  function show({ index, label, probabilities }, description) {
    document.getElementById("result").textContent = label;
    const ranked = probabilities.map((p, i) => [p, i]).sort((a, b) => b[0] - a[0]).slice(0, 10);
    document.getElementById("bars").replaceChildren(...ranked.map(([p, i]) => {
      const row = document.createElement("div");
      row.className = i === index ? "bar best" : "bar";
      const bar = document.createElement("div");
      bar.style.width = `${(p * 100).toFixed(1)}%`;
      const track = document.createElement("span");
      track.append(bar);
      row.append(description.class_names[i], track, `${(p * 100).toFixed(1)}%`);
      return row;
    }));
  }

  let drawing = false;
  function point(event) {
    const box = pad.getBoundingClientRect();
    return [(event.clientX - box.left) * (pad.width / box.width), (event.clientY - box.top) * (pad.height / box.height)];
  }
  pad.addEventListener("pointerdown", (event) => {
    drawing = true;
    pad.setPointerCapture(event.pointerId);
    context.beginPath();
    context.moveTo(...point(event));
  });
  pad.addEventListener("pointermove", (event) => {
    if (!drawing) return;
    context.lineWidth = 18;
    context.lineCap = context.lineJoin = "round";
    context.strokeStyle = "#000";
    context.lineTo(...point(event));
    context.stroke();
  });
  pad.addEventListener("pointerup", () => {
    drawing = false;
    classifyCanvas().catch((error) => { status.textContent = error.message; });
  });
  document.getElementById("clear").addEventListener("click", clearPad);
  document.getElementById("file").addEventListener("change", (event) => {
    const [file] = event.target.files;
    if (!file) return;
    const url = URL.createObjectURL(file);
    classifyImage(url).catch((error) => { status.textContent = `${file.name}: ${error.message}`; }).finally(() => URL.revokeObjectURL(url));
  });
  clearPad();

  window.edgecnn = { ready: model.then(({ description }) => description), classify, classifyImage, classifyCanvas };
})();
