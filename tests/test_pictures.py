"""Pictures as users take them: every format Pillow decodes (HEIC through its plug-in), EXIF orientation applied in
predict, image folders and the examples, the folder summary, and `verify --corruptions` on the seed CNN and a MobileNet."""

from __future__ import annotations

import dataclasses
import io
import json
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from conftest import run_cli
from PIL import Image

from edgecnn.core.description import Color, Orientation
from edgecnn.core.errors import EdgecnnError
from edgecnn.core.images import load_pixels

EXAMPLES = Path(__file__).resolve().parent.parent / "examples"
EXIF_ORIENTATION = 0x0112
# What a camera stores for each EXIF orientation: the upright picture turned the other way (Pillow's exif_transpose
# applies these transposes to show it upright, so storing their inverses gives the upright picture back).
STORED_FOR = {
    2: Image.Transpose.FLIP_LEFT_RIGHT, 3: Image.Transpose.ROTATE_180, 4: Image.Transpose.FLIP_TOP_BOTTOM,
    5: Image.Transpose.TRANSPOSE, 6: Image.Transpose.ROTATE_90, 7: Image.Transpose.TRANSVERSE, 8: Image.Transpose.ROTATE_270,
}


def exif_with(orientation: int) -> bytes:
    exif = Image.Exif()
    exif[EXIF_ORIENTATION] = orientation
    return exif.tobytes()


def rendering(digit: np.ndarray, size: tuple[int, int] = (48, 64)) -> Image.Image:
    """A dark digit on light paper in color, non-square (width x height), as a phone would photograph it."""
    rgb = np.stack([255 - digit, 255 - digit // 2, 255 - digit // 3], -1).astype(np.uint8)
    return Image.fromarray(rgb).resize(size, Image.Resampling.BILINEAR)


def predictions(model: Path, paths: list[Path], tmp_path: Path) -> list[dict]:
    output = tmp_path / "rows.jsonl"
    run = run_cli("predict", *map(str, paths), "--model", str(model), "--output", str(output))
    assert output.is_file(), run.stderr
    return [json.loads(line) for line in output.read_text().splitlines()]


@pytest.mark.parametrize("orientation", range(1, 9))
def test_every_exif_orientation_gives_the_upright_pixels(tmp_path, orientation):
    upright = rendering(np.arange(28 * 28, dtype=np.uint8).reshape(28, 28) % 251, (30, 20))
    stored = upright.transpose(STORED_FOR[orientation]) if orientation in STORED_FOR else upright
    path = tmp_path / f"o{orientation}.png"  # lossless, so the pixels must match exactly
    stored.save(path, exif=exif_with(orientation))
    np.testing.assert_array_equal(load_pixels(path, Color.RGB), np.asarray(upright))
    if orientation in (5, 6, 7, 8):
        assert load_pixels(path, Color.RGB, Orientation.STORED).shape == (30, 20, 3), "the stored pixels are the other way round"


def sideways_digit(model: Path, real_arrays, tmp_path: Path) -> tuple[Path, Path, Path]:
    """(a phone JPEG stored sideways with orientation 6, the same picture saved upright losslessly, the stored pixels
    alone): the first test digit whose class changes when it is seen sideways, so that ignoring the tag shows."""
    folder = tmp_path / "exif"
    folder.mkdir()
    candidates = []
    for index, digit in enumerate(real_arrays["x_test"][:40]):
        stored = rendering(digit).transpose(Image.Transpose.ROTATE_90)
        stored.save(folder / f"rotated{index}.jpg", quality=92, exif=exif_with(6))
        with Image.open(folder / f"rotated{index}.jpg") as decoded:
            decoded.load()
            decoded.save(folder / f"sideways{index}.png")
            decoded.transpose(Image.Transpose.ROTATE_270).save(folder / f"upright{index}.png")
        candidates.append(index)
    rows = predictions(model, [folder / f"{kind}{index}.png" for index in candidates for kind in ("upright", "sideways")], tmp_path)
    for position, index in enumerate(candidates):
        if rows[2 * position]["index"] != rows[2 * position + 1]["index"]:
            return folder / f"rotated{index}.jpg", folder / f"upright{index}.png", folder / f"sideways{index}.png"
    raise AssertionError("no digit changes class sideways")


def model_file(manifest_path: Path, artifact: str = "onnx-fp32-uint8-input") -> Path:
    from edgecnn.core.manifest import load_manifest

    manifest = load_manifest(manifest_path)
    return manifest.resolve(manifest.artifact(artifact).path)


@pytest.fixture(scope="module")
def rgb_model_file(rgb_exported) -> Path:
    """The MobileNetV3 at 32x32 RGB (resize recipe): every format reaches it as RGB pixels."""
    return model_file(rgb_exported)


@pytest.fixture(scope="module")
def digit_model_file(exported) -> Path:
    """The seed CNN (digit recipe): it reads a digit's shape, so a picture seen sideways changes its class."""
    return model_file(exported)


def test_a_phone_photo_is_classified_upright_by_predict(digit_model_file, real_arrays, tmp_path):
    rotated, upright, sideways = sideways_digit(digit_model_file, real_arrays, tmp_path)
    got, expected, ignored = (np.array(row["probabilities"]) for row in predictions(digit_model_file, [rotated, upright, sideways], tmp_path))
    assert np.abs(got - expected).max() <= 1e-4
    assert got.argmax() != ignored.argmax() and np.abs(got - ignored).max() > 0.05, "negative control: the tag ignored changes the class"


def test_the_description_records_that_orientation_is_applied(rgb_exported):
    from edgecnn.core.manifest import load_manifest
    from edgecnn.runners import artifact_format_of, open_runner
    from edgecnn.runners.registry import RunOptions

    manifest = load_manifest(rgb_exported)
    assert manifest.source_model().description.orientation is Orientation.EXIF
    path = manifest.resolve(manifest.artifact("tflite-int8").path)
    runner = open_runner(artifact_format_of(path), path, RunOptions(), None)
    try:
        assert runner.description.orientation is Orientation.EXIF, "the file itself says so, for apps that embed it"
    finally:
        runner.close()


def node_command() -> list[str]:
    node = shutil.which("node")
    if node is None or not (EXAMPLES / "node" / "node_modules" / "sharp").is_dir():
        pytest.skip("node or the example's node_modules missing (cd examples/node && npm ci --ignore-scripts)")
    return [node, str(EXAMPLES / "node" / "classify.js")]


@pytest.mark.parametrize("kind", ["python", "node"])
def test_the_examples_turn_a_phone_photo_upright_like_predict(digit_model_file, real_arrays, tmp_path, kind):
    command = node_command() if kind == "node" else [sys.executable, str(EXAMPLES / "python" / "classify.py")]
    rotated, _, _ = sideways_digit(digit_model_file, real_arrays, tmp_path)
    (expected,) = predictions(digit_model_file, [rotated], tmp_path)
    completed = subprocess.run([*command, str(digit_model_file), str(rotated), "--json"], capture_output=True, text=True, timeout=300, cwd="/")
    assert completed.returncode == 0, completed.stderr
    row = json.loads(completed.stdout)
    assert row["index"] == expected["index"]
    assert np.abs(np.array(row["probabilities"]) - np.array(expected["probabilities"])).max() <= 0.01


def format_files(real_arrays, folder: Path) -> dict[str, Path]:
    """One digit in every format, each made by the library users' cameras and tools use; the reference is its PNG."""
    import pillow_heif

    digit, other = rendering(real_arrays["x_test"][0]), rendering(real_arrays["x_test"][1])
    files = {"png": folder / "digit.png", "webp": folder / "digit.webp", "tiff": folder / "digit.tiff", "gif": folder / "digit.gif",
             "animated-webp": folder / "anim.webp", "mpo": folder / "digit.mpo", "cmyk-jpeg": folder / "cmyk.jpg",
             "png16": folder / "digit16.png", "avif": folder / "digit.avif", "heic": folder / "digit.heic", "lying": folder / "webp-inside.png"}
    digit.save(files["png"])
    digit.save(files["webp"], lossless=True)
    digit.save(files["tiff"], save_all=True, append_images=[other])  # two pages: the first is the picture
    digit.convert("L").save(files["gif"], save_all=True, append_images=[other.convert("L")], duration=100)  # two frames
    digit.save(files["animated-webp"], save_all=True, append_images=[other], lossless=True, duration=100)
    digit.save(files["mpo"], save_all=True, append_images=[other], quality=95)
    digit.convert("CMYK").save(files["cmyk-jpeg"], quality=95)
    gray16 = (np.asarray(digit.convert("L"), dtype=np.uint16) * 257).astype(np.uint16)
    Image.fromarray(gray16).save(files["png16"])
    digit.save(files["avif"], quality=95)
    pillow_heif.from_pillow(digit).save(files["heic"], quality=95)
    files["lying"].write_bytes(files["webp"].read_bytes())
    return files


def test_every_common_format_gives_a_prediction(rgb_model_file, real_arrays, tmp_path):
    files = format_files(real_arrays, tmp_path)
    rows = dict(zip(files, predictions(rgb_model_file, list(files.values()), tmp_path), strict=True))
    assert not [name for name, row in rows.items() if "error" in row], rows
    reference = np.array(rows["png"]["probabilities"])
    for exact in ("webp", "tiff", "animated-webp", "lying"):  # lossless, and the first page/frame
        assert np.abs(np.array(rows[exact]["probabilities"]) - reference).max() <= 1e-6, exact
    gray_png = tmp_path / "gray.png"
    Image.open(files["png"]).convert("L").save(gray_png)
    (gray,) = predictions(rgb_model_file, [gray_png], tmp_path)
    for exact in ("gif", "png16"):  # the first frame; 16-bit gray scaled to 8 bits, not clipped to white
        assert np.abs(np.array(rows[exact]["probabilities"]) - np.array(gray["probabilities"])).max() <= 1e-6, exact
    for lossy in ("mpo", "avif", "heic", "cmyk-jpeg"):
        assert rows[lossy]["index"] == rows["png"]["index"], lossy


def test_a_folder_finds_every_format_and_refuses_what_is_not_a_picture(rgb_model_file, real_arrays, tmp_path):
    (tmp_path / "photos").mkdir()
    files = format_files(real_arrays, tmp_path / "photos")
    (tmp_path / "photos" / "postscript.jpg").write_bytes(b"%!PS-Adobe-3.0 EPSF-3.0\n%%BoundingBox: 0 0 10 10\nshowpage\n")
    (tmp_path / "photos" / "notes.txt").write_text("not a picture")
    run = run_cli("predict", str(tmp_path / "photos"), "--model", str(rgb_model_file))
    assert run.returncode == 1
    lines = run.stdout.splitlines()
    assert sum(": error:" in line for line in lines) == 1 and len([line for line in lines if line.startswith(str(tmp_path))]) == len(files) + 1
    assert "postscript.jpg: error: cannot decode image: not a picture edgecnn decodes" in run.stdout, "EPS is never handed to Ghostscript"
    summary = lines[lines.index(f"classified {len(files)} of {len(files) + 1} images (1 unreadable)"):]
    assert summary[1].split() == ["class", "images", "share", "mean", "p"]
    class_rows = summary[2 : summary.index("  failed: 1")]
    assert sum(int(row.split()[1]) for row in class_rows) == len(files), "every picture that decoded is counted under its class"
    (reason,) = summary[summary.index("  failed: 1") + 1 :]
    assert reason.split()[0] == "1" and "not a picture edgecnn decodes" in reason and "postscript.jpg" in reason


def test_a_heic_without_its_plug_in_names_the_plug_in(real_arrays, tmp_path, monkeypatch):
    import edgecnn.core.images as images

    files = format_files(real_arrays, tmp_path)
    assert load_pixels(files["heic"], Color.RGB).shape == (64, 48, 3)
    monkeypatch.setattr(images, "decodable_formats", lambda: ("PNG", "JPEG", "WEBP"))
    with pytest.raises(EdgecnnError, match=r"HEIF picture: decoding it needs the pillow-heif Pillow plug-in \(pip install pillow-heif\)"):
        load_pixels(files["heic"], Color.RGB)


def test_an_image_folder_for_training_is_read_upright(tmp_path, real_arrays):
    from edgecnn.core.data import DataRequest, load_dataset

    for label, digits in (("three", real_arrays["x_test"][:6]), ("seven", real_arrays["x_test"][6:12])):
        (tmp_path / "photos" / label).mkdir(parents=True)
        for index, digit in enumerate(digits):
            upright = rendering(digit, (20, 30))
            if index % 2:  # half are phone photos stored sideways (JPEG) with their tag; the others upright WebP
                upright.transpose(Image.Transpose.ROTATE_90).save(tmp_path / "photos" / label / f"{index}.jpg", quality=95, exif=exif_with(6))
            else:
                upright.save(tmp_path / "photos" / label / f"{index}.webp", lossless=True)
    dataset = load_dataset(DataRequest(spec=str(tmp_path / "photos")))
    images = np.concatenate([dataset.x_train, dataset.x_test])
    assert images.shape[1:] == (30, 20, 3), "every picture upright: 30 high, 20 wide, with no --image-size needed"


def test_jpeg_recompression_is_seeded_and_each_corruption_changes_the_images():
    from edgecnn.core.corruptions import CorruptionKind, corrupted, every_corruption

    rng = np.random.default_rng(0)
    images = rng.integers(0, 256, (6, 28, 28, 1), dtype=np.uint8)
    for corruption in every_corruption():
        first, again, other = (corrupted(images, corruption, seed) for seed in (0, 0, 1))
        assert first.shape == images.shape and first.dtype == np.uint8
        assert np.array_equal(first, again), corruption
        assert not np.array_equal(first, images), corruption
        if corruption.kind in (CorruptionKind.GAUSSIAN_NOISE, CorruptionKind.ROTATION):
            assert not np.array_equal(first, other), f"{corruption.kind}: the seed draws the noise and the turning directions"
    strong = corrupted(images, every_corruption(5)[1], 0).astype(float) - images
    weak = corrupted(images, every_corruption(1)[1], 0).astype(float) - images
    assert np.abs(strong).mean() > np.abs(weak).mean(), "severity 5 is stronger than 1"


def corrupted_verify(manifest: Path, *extra: str) -> tuple[subprocess.CompletedProcess, dict]:
    run = run_cli("verify", "--manifest", str(manifest), "--corruptions", *extra, env={"COLUMNS": "250"})
    return run, json.loads((manifest.parent / "verify.json").read_text())


@pytest.mark.parametrize("fixture", ["exported", "rgb_exported"])
def test_verify_corruptions_judges_every_file_on_every_corruption(fixture, request, tmp_path):
    """The seed CNN and a MobileNet: healthy fp32 files agree with Keras on every corrupted copy (the reference is Keras
    on the same corrupted pictures), and each row has the plain split's verdict. (The suite's MobileNet, briefly fitted,
    is near chance: the corruptions' effect on accuracy is asserted on the seed CNN.)"""
    source = request.getfixturevalue(fixture).parent
    folder = tmp_path / "copy"
    shutil.copytree(source, folder)
    run, report = corrupted_verify(folder / "manifest.json", "--severity", "2", "--seed", "7")
    assert run.returncode in (0, 1, 3), run.stderr
    block = report["corruptions"]
    assert block["seed"] == 7 and block["severity"] == 2 and "Pillow" in block["library"]
    names = [row["name"] for row in report["artifacts"]]
    assert [split["corruption"]["kind"] for split in block["splits"]] == [
        "rotation", "gaussian-noise", "blur", "brightness", "contrast", "jpeg", "resize", "crop"]
    for split in block["splits"]:
        assert [row["name"] for row in split["artifacts"]] == names
        for row in split["artifacts"]:
            assert row["status"] in ("PASS", "FAIL", "INCONCLUSIVE") and 0 <= row["accuracy"] <= 1 and 0 <= row["agreement"] <= 1
            if row["precision"] == "fp32":
                assert row["status"] == "PASS" and row["agreement"] == 1.0, (split["corruption"], row)
    if fixture == "exported":
        assert min(split["keras_accuracy"] for split in block["splits"]) < report["keras"]["accuracy"] - 0.02, "the corruptions are real"
    assert (folder / "verify_corruptions.png").stat().st_size > 10_000
    assert "corrupted copies" in run.stdout and "gaussian-noise" in run.stdout


def test_a_damaged_file_fails_on_the_corrupted_copies_too(exported, tmp_path):
    """Negative control: an fp32 file whose input is scaled by 1.3 (a wrong normalisation) FAILs on every corruption."""
    from test_negative_controls import with_input_op

    from edgecnn.core.files import sha256_file
    from edgecnn.core.manifest import load_manifest, update_manifest

    folder = tmp_path / "copy"
    shutil.copytree(exported.parent, folder)
    manifest = load_manifest(folder / "manifest.json")
    entry = manifest.artifact("onnx-fp32")
    path = manifest.resolve(entry.path)
    with_input_op(path, path, "Mul", np.array(1.3, dtype=np.float32))
    update_manifest(folder, manifest.model, [dataclasses.replace(entry, sha256=sha256_file(path), bytes=path.stat().st_size)])
    run, report = corrupted_verify(folder / "manifest.json", "--artifact", "onnx-fp32")
    assert run.returncode == 1
    assert report["artifacts"][0]["status"] == "FAIL"
    assert all(split["artifacts"][0]["status"] == "FAIL" for split in report["corruptions"]["splits"])


def test_corruptions_on_a_device_install_say_what_they_need(exported, tmp_path):
    code = ("import sys, importlib.util; real = importlib.util.find_spec; "
            "importlib.util.find_spec = lambda name, *a: None if name == 'tensorflow' else real(name, *a); "
            "from edgecnn.cli import console; sys.argv = ['edgecnn'] + sys.argv[1:]; console()")
    folder = tmp_path / "copy"
    shutil.copytree(exported.parent, folder)
    completed = subprocess.run([sys.executable, "-c", code, "verify", "--manifest", str(folder / "manifest.json"), "--corruptions"],
                               capture_output=True, text=True, timeout=300)
    assert completed.returncode == 2, completed.stderr
    assert completed.stderr.strip().splitlines() == [
        "error: judging corrupted copies runs the Keras model on them: it needs TensorFlow (the train extra); "
        "run it where the model was exported (--corruptions)"]


@pytest.mark.parametrize("suffix", [".ppm", ".tga", ".qoi", ".jp2", ".bmp", ".tif"])
def test_the_other_formats_pillow_writes_come_back_exactly(tmp_path, suffix):
    pixels = np.random.default_rng(1).integers(0, 256, (20, 30, 3), dtype=np.uint8)
    Image.fromarray(pixels).save(tmp_path / f"p{suffix}")
    np.testing.assert_array_equal(load_pixels(tmp_path / f"p{suffix}", Color.RGB), pixels)


def test_a_float_pfm_is_scaled_from_0_1(tmp_path):
    levels = np.random.default_rng(2).integers(0, 256, (12, 9), dtype=np.uint8)
    Image.fromarray((levels / 255.0).astype(np.float32), "F").save(tmp_path / "p.pfm")
    assert np.abs(load_pixels(tmp_path / "p.pfm", Color.GRAY)[..., 0].astype(int) - levels).max() <= 1


def test_a_jpeg_named_for_what_it_is_not(tmp_path):
    image = Image.fromarray(np.full((10, 12, 3), 200, np.uint8))
    buffer = io.BytesIO()
    image.save(buffer, format="JPEG")
    (tmp_path / "really-a-jpeg.tiff").write_bytes(buffer.getvalue())
    assert load_pixels(tmp_path / "really-a-jpeg.tiff", Color.RGB).shape == (10, 12, 3), "decoded by content"
