// The page: an edgecnn ONNX model in onnxruntime-web (WASM files from this folder, no CDN), a drawing pad, and
// window.edgecnn for automation: `ready` (resolves once the model is loaded), `classify(pixels)` for 784 raw
// MNIST-style pixels, `classifyCanvas()` for what is drawn. The model is ?model=URL, by default the uint8-input
// ONNX file beside the page; a float-input file works too (the page scales pixels to [0, 1] for it).
(function () {
  const params = new URLSearchParams(window.location.search);
  const modelUrl = params.get("model") || "mnist_cnn_uint8_input.onnx";
  const pad = document.getElementById("pad");
  const context = pad.getContext("2d", { willReadFrequently: true });
  const status = document.getElementById("status");

  ort.env.wasm.wasmPaths = new URL("node_modules/onnxruntime-web/dist/", window.location.href).href;
  ort.env.wasm.numThreads = 1; // threads need cross-origin isolation headers, which a plain static server does not send

  function clearPad() {
    context.fillStyle = "#fff";
    context.fillRect(0, 0, pad.width, pad.height);
    document.getElementById("result").textContent = "";
    document.getElementById("bars").replaceChildren();
  }

  async function loadModel() {
    const session = await ort.InferenceSession.create(modelUrl, { executionProviders: ["wasm"] });
    const input = session.inputNames[0];
    const rawPixels = (session.inputMetadata?.[0]?.type ?? "uint8") === "uint8";
    status.textContent = `model ${modelUrl} loaded (${rawPixels ? "uint8 pixels" : "float input"})`;
    return { session, input, rawPixels };
  }

  const model = loadModel().catch((error) => {
    status.textContent = `cannot load ${modelUrl}: ${error.message}`;
    throw error;
  });

  async function classify(pixels) {
    if (!(pixels instanceof Uint8Array) || pixels.length !== 784) throw new Error("classify expects a Uint8Array of 784 pixels");
    const { session, input, rawPixels } = await model;
    const tensor = rawPixels
      ? new ort.Tensor("uint8", Uint8Array.from(pixels), [1, 28, 28])
      : new ort.Tensor("float32", Float32Array.from(pixels, (v) => v / 255), [1, 28, 28, 1]);
    const output = await session.run({ [input]: tensor });
    const probabilities = Array.from(output[session.outputNames[0]].data);
    return { label: probabilities.indexOf(Math.max(...probabilities)), probabilities };
  }

  async function classifyCanvas() {
    const { data } = context.getImageData(0, 0, pad.width, pad.height);
    const gray = MnistPreprocess.grayFromRGBA(data, pad.width, pad.height);
    const result = await classify(MnistPreprocess.toMnist(gray, pad.width, pad.height));
    show(result);
    return result;
  }

  function show({ label, probabilities }) {
    document.getElementById("result").textContent = String(label);
    document.getElementById("bars").replaceChildren(...probabilities.map((p, digit) => {
      const row = document.createElement("div");
      row.className = digit === label ? "bar best" : "bar";
      const bar = document.createElement("div");
      bar.style.width = `${(p * 100).toFixed(1)}%`;
      const track = document.createElement("span");
      track.append(bar);
      row.append(String(digit), track, `${(p * 100).toFixed(1)}%`);
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
  clearPad();

  window.edgecnn = { ready: model.then(() => true), classify, classifyCanvas };
})();
