"""Issue 28's acceptance run: on a zoo of keras.applications families, plain int8 against `export --quantize int8
--max-drop 0.5`, per format, judged as a user would judge the files they ship.

    python bench/int8_search.py [--families MobileNetV2,...] [--data ../shared/data/mnist-offline.npz] [--epochs 4]

The data's test split is cut in two seeded halves (`unseen_split`, written beside the families): the search judges on
one (`--validation-data`: images the models never saw, as a user who keeps a validation set gives them), verify on the
other. Each family is trained on every class of the training split in its size and colour (bench/quantizers.py's
`trained`: a model.keras already in its folder is reused), then exported three times per format into its own folder:
fp32, plain int8 (the format's first candidate), and the search's int8 (its wall time is the search's, on this
machine's cores). Every file is verified on the other half, and every file of a family is timed in one interleaved bench run
(batch 1, one thread: ONNX files under ONNX Runtime's CPU provider, TFLite files under LiteRT). A file meets the
acceptance when it PASSes, is at most 40% of its format's fp32 file, and its batch-1 p50 is no worse than that fp32
file's. Prints one Markdown table for bench/RESULTS.md.
"""

from __future__ import annotations

import sys
import time
from dataclasses import dataclass
from pathlib import Path

REPOSITORY = Path(__file__).resolve().parents[1]
SHARED_NPZ = REPOSITORY.parent / "shared" / "data" / "mnist-offline.npz"
MAX_SIZE_SHARE = 0.40  # of the format's fp32 file (the acceptance)
ACCEPTANCE_FAMILIES = ("MobileNet", "MobileNetV2-1.0", "MobileNetV3Small", "MobileNetV3Large-nopre", "EfficientNetB0", "NASNetMobile",
                       "ResNet50V2", "MobileNet-gray", "MobileNetV2")


@dataclass(frozen=True)
class Row:
    family: str
    artifact: str  # onnx-int8 / tflite-int8
    variant: str  # "plain" or "search"
    verdict: str
    agreement: float
    delta_points: float
    size_share: float
    p50_us: float
    vs_fp32: float  # fp32 p50 / this p50: 1 or more is no worse
    search: str  # the search's outcome: steps, tiers, seconds ("" for plain)

    @property
    def accepted(self) -> bool:
        return self.verdict == "PASS" and self.size_share <= MAX_SIZE_SHARE and self.vs_fp32 >= 1.0


def unseen_split(data: str, out: Path) -> tuple[str, str]:
    """(data, validation data): the data with half its test split (seeded), and the other half as its own npz (both
    splits of it: the search judges on every image of --validation-data)."""
    import numpy as np

    from edgecnn.core.data import load_dataset

    dataset = load_dataset(data)
    order = np.random.default_rng(28).permutation(len(dataset.y_test))
    judged, kept = np.sort(order[: len(order) // 2]), np.sort(order[len(order) // 2:])
    out.mkdir(parents=True, exist_ok=True)
    np.savez(out / "data.npz", x_train=dataset.x_train, y_train=dataset.y_train, x_test=dataset.x_test[kept], y_test=dataset.y_test[kept])
    half = len(judged) // 2
    np.savez(out / "validation.npz", x_train=dataset.x_test[judged[:half]], y_train=dataset.y_test[judged[:half]],
             x_test=dataset.x_test[judged[half:]], y_test=dataset.y_test[judged[half:]])
    return str(out / "data.npz"), str(out / "validation.npz")


def exported(family: object, keras_path: Path, data: str, folder: Path, **options: object) -> Path:
    """fp32 and the int8 variant of both formats in `folder`; the manifest's path."""
    from edgecnn.core.description import Color
    from edgecnn.stages.export import ExportOptions, FormatChoice, Quantize, export

    common = {"model": keras_path, "data": data, "image_size": family.size, "color": Color.of_channels(family.channels),  # type: ignore[attr-defined]
              "out": folder, "replace": True}
    for choice in (FormatChoice.ONNX, FormatChoice.TFLITE):
        export(ExportOptions(**common, format=choice))
    export(ExportOptions(**common, quantize=Quantize.INT8, **options))  # type: ignore[arg-type]
    return folder / "manifest.json"


def families() -> tuple[object, ...]:
    """bench/zoo.py's families, and the MobileNets at their published width (the zoo's narrow ones keep the suite fast;
    at alpha 0.25-0.35 a layer's per-channel scales and biases are a large part of an int8 file)."""
    return (*zoo.FAMILIES, zoo.Family("MobileNet", "MobileNet", (32, 32)), zoo.Family("MobileNetV2-1.0", "MobileNetV2", (32, 32)))


def measured(family: object, data: str, validation: str, epochs: int, out: Path) -> list[Row]:
    from edgecnn.core.manifest import load_manifest
    from edgecnn.runners import RunOptions, RuntimeName
    from edgecnn.stages.bench import BenchOptions, bench
    from edgecnn.stages.verify import VerifyOptions, verify

    folder = out / family.name  # type: ignore[attr-defined]
    folder.mkdir(parents=True, exist_ok=True)
    keras_path = quantizers.trained(family, data, epochs, folder)
    manifests = {"plain": exported(family, keras_path, data, folder / "plain")}
    started = time.perf_counter()
    manifests["search"] = exported(family, keras_path, data, folder / "search", max_drop=0.5, validation_data=validation)
    print(f"{family.name}: plain and searched int8 exported ({time.perf_counter() - started:.0f} s with the search)", flush=True)  # type: ignore[attr-defined]
    files: dict[tuple[str, str], Path] = {}
    verdicts = {}
    for variant, path in manifests.items():
        manifest = load_manifest(path)
        for entry in manifest.artifacts:
            files[(variant, entry.name)] = manifest.resolve(entry.path)
        verdicts |= {(variant, result.name): result for result in verify(VerifyOptions(manifest=path)).results}
    timed = [path for key, path in files.items() if key[0] == "search" or key[1].endswith("int8")]
    benched = bench(BenchOptions(models=tuple(timed), data=data, batch_sizes=(1,), rounds=5, seconds=0.5, memory=False, out=folder,
                                 run=RunOptions(runtimes=(RuntimeName.ONNXRUNTIME, RuntimeName.LITERT), threads=1)))
    p50 = {Path(result.path).resolve(): result.p50_us for result in benched.results}
    rows = []
    for (variant, name), path in files.items():
        if not name.endswith("int8"):
            continue
        fp32 = files[("search", name.replace("int8", "fp32"))]
        result = verdicts[(variant, name)]
        searched = load_manifest(manifests[variant]).artifact(name).details.accuracy_search
        trail = ""
        if searched is not None:
            last = searched.steps[-1]
            trail = (f"{'met' if searched.met else 'missed'} in {len(searched.steps)} steps, {searched.seconds:.0f} s; "
                     f"{len(last.dynamic_layers)} per-call, {len(last.int16_layers)} int16, {len(last.kept_float_layers)} float")
        own = p50[path.resolve()]
        rows.append(Row(family.name, name, variant, result.status.value, result.agreement or 0.0, result.delta_points or 0.0,  # type: ignore[attr-defined]
                        path.stat().st_size / fp32.stat().st_size, own, p50[fp32.resolve()] / own, trail))
    zoo.release_tensorflow_state()
    return rows


def markdown(rows: list[Row], data: str, epochs: int) -> str:
    lines = [f"Data: all classes of `{data}` in each model's size and colour, {epochs} epochs; verify on half the test split (the search judged on the other half); "
             "batch-1 p50 with one thread, every file of a family interleaved in one bench run (ONNX under ORT CPU, TFLite under "
             "LiteRT); \"vs fp32\": the format's fp32 p50 over this file's (1x or more: no worse). Accepted: PASS, at most "
             f"{MAX_SIZE_SHARE:.0%} of fp32, no slower.", "",
             "| family | file | int8 | verify | agreement | Δ points | of fp32 | b1 p50 µs | vs fp32 | accepted | search |",
             "| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |"]
    for row in rows:
        lines.append(f"| {row.family} | {row.artifact} | {row.variant} | {row.verdict} | {row.agreement:.2%} | {row.delta_points:+.2f} | "
                     f"{row.size_share:.0%} | {row.p50_us:,.0f} | {row.vs_fp32:.2f}x | {'yes' if row.accepted else 'no'} | {row.search} |")
    for variant in ("plain", "search"):
        chosen = [row for row in rows if row.variant == variant]
        lines.append(f"\n{variant}: {sum(row.accepted for row in chosen)}/{len(chosen)} int8 files accepted "
                     f"({sum(row.verdict == 'PASS' for row in chosen)} PASS, {sum(row.size_share <= MAX_SIZE_SHARE for row in chosen)} within "
                     f"{MAX_SIZE_SHARE:.0%}, {sum(row.vs_fp32 >= 1.0 for row in chosen)} no slower)")
    return "\n".join(lines)


def main() -> None:
    arguments = zoo.family_parser(__doc__.splitlines()[0], str(SHARED_NPZ), ",".join(ACCEPTANCE_FAMILIES), 4,
                                  REPOSITORY / "bench" / "out" / "int8_search").parse_args()
    data, validation = unseen_split(arguments.data, arguments.out)
    rows: list[Row] = []
    for name in arguments.families.split(","):
        family = next(family for family in families() if family.name == name)  # type: ignore[attr-defined]
        started = time.perf_counter()
        try:
            rows += measured(family, data, validation, arguments.epochs, arguments.out)
        except Exception as error:  # a family the converters refuse is a finding, not the end of the run
            print(f"{name}: {type(error).__name__}: {error}", flush=True)
        print(f"{name}: {time.perf_counter() - started:.0f} s", flush=True)
        print(markdown(rows, data, arguments.epochs), flush=True)


sys.path.insert(0, str(REPOSITORY / "bench"))
import quantizers  # noqa: E402  (bench/quantizers.py: `trained`)
import zoo  # noqa: E402  (bench/zoo.py: the families and their helpers)

if __name__ == "__main__":
    main()
