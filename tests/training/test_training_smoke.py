"""The whole offline chain on a tiny budget: train -> export -> parity -> evaluate -> fine-tune.

Runs the documented commands as subprocesses, on a few hundred faces from the shared FER2013 zip when it is
present, otherwise on faces the test makes from the committed real faces in tests/data/faces.
"""

from __future__ import annotations

import io
import json
import os
import shlex
import subprocess
import sys
import zipfile
from dataclasses import replace
from pathlib import Path

import cv2
import numpy as np
import onnxruntime as ort
import pytest

from deepfer.contract import LABELS, MetadataKey
from training.config import TrainConfig
from training.data import load_split, sha256_of, stratified_split
from training.distill import file_sha256 as sha256_of_file

pytest.importorskip("tensorflow", reason="the training extra is not installed (pip install -e '.[train]')")

REPO = Path(__file__).resolve().parents[2]
COMMITTED_FACES = REPO / "tests" / "data" / "faces"
V3_SMOOTHING_SIGMA = 0.6  # what v3.1 and v3.2 were exported with, the default then (export/smoothing.py)


def run_command(command: list[str], env: dict[str, str] | None = None, timeout: int = 300) -> None:
    """Run ``command`` from the repository root, failing the test with its output on error."""
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3", "CUDA_VISIBLE_DEVICES": "", **(env or {})}
    result = subprocess.run(command, cwd=REPO, env=env, capture_output=True, text=True, timeout=timeout, check=False)
    output = f"{result.stdout[-3000:]}\n{result.stderr[-3000:]}"
    assert result.returncode == 0, f"{command}: exit {result.returncode}\n{output}"


def run_module(*args: str | Path) -> None:
    """``python -m ...`` as the README runs it."""
    run_command([sys.executable, "-m", *map(str, args)])


def make_faces(root: Path, variants: int) -> Path:
    """A Kaggle-layout folder whose train/ holds shifted, flipped and re-lit copies of the committed faces."""
    rng = np.random.default_rng(7)
    for label in LABELS:
        for split in ("train", "test"):
            (root / split / label).mkdir(parents=True, exist_ok=True)
        for source in sorted((COMMITTED_FACES / "test" / label).glob("*.jpg")):
            face = cv2.imread(str(source), cv2.IMREAD_GRAYSCALE)
            cv2.imwrite(str(root / "test" / label / source.name), face)
            for index in range(variants):
                dx, dy = rng.integers(-3, 4, size=2)
                moved = cv2.warpAffine(
                    face, np.float32([[1, 0, dx], [0, 1, dy]]), (48, 48), borderMode=cv2.BORDER_REFLECT
                )
                moved = cv2.convertScaleAbs(moved, alpha=rng.uniform(0.8, 1.2), beta=rng.uniform(-20, 20))
                if index % 2:
                    moved = moved[:, ::-1]
                cv2.imwrite(str(root / "train" / label / f"{source.stem}_{index}.png"), moved)
    return root


def evaluate(model: Path, data: Path, out: Path, *options: str | Path) -> None:
    """``python -m training.evaluate`` as the README runs it."""
    run_module("training.evaluate", "--model", model, "--data", data, "--out", out, *options)


@pytest.fixture(scope="module")
def dataset(tmp_path_factory: pytest.TempPathFactory, shared_dir: Path) -> Path:
    archive = shared_dir / "data" / "fer2013.zip"
    if archive.is_file():
        return archive
    return make_faces(tmp_path_factory.mktemp("faces"), variants=12)


@pytest.fixture(scope="module")
def trained(tmp_path_factory: pytest.TempPathFactory, dataset: Path) -> Path:
    run = tmp_path_factory.mktemp("run")
    run_module(
        "training.train",
        "--data",
        dataset,
        "--out",
        run,
        "--epochs",
        "1",
        "--limit-per-class",
        "40",
        "--batch-size",
        "32",
        "--widths",
        "8",
        "16",
        "32",
        "64",
    )
    return run


@pytest.fixture(scope="module")
def exported(trained: Path) -> Path:
    onnx_path = trained / "emotion.onnx"
    run_module(
        "export",
        "--model",
        trained / "best.keras",
        "--out",
        onnx_path,
        "--version",
        "smoke-test",
        "--int8",
        trained / "emotion-int8.onnx",
    )
    return onnx_path


def test_training_records_what_reproduces_the_run(trained: Path, dataset: Path) -> None:
    record = json.loads((trained / "run.json").read_text())
    assert record["data"]["sha256"] == sha256_of(dataset)
    assert record["command"].startswith("python -m training.train --data")
    assert record["config"]["seed"] == 1337
    assert sum(record["data"]["val"].values()) > 0
    assert 0.0 <= record["metrics"]["val_accuracy"] <= 1.0
    assert (trained / "best.keras").is_file()
    assert (trained / "history.csv").read_text().startswith("epoch,")


def assert_onnx_answers_as_keras(keras_model: Path, onnx_model: Path, *, smoothing_sigma: float) -> None:
    """The exported graph gives the Keras model's probabilities on the committed real faces."""
    from export.convert import float32_copy
    from export.smoothing import smooth
    from training.model import load_network

    faces = load_split(COMMITTED_FACES, "test").faces[..., np.newaxis].astype(np.float32)
    # The graph smooths each face as OpenCV does (reflected borders), if at all, then averages it with its mirror.
    smoothed = smooth(faces, smoothing_sigma)
    model = float32_copy(load_network(keras_model))
    expected = (model(smoothed, training=False).numpy() + model(smoothed[:, :, ::-1], training=False).numpy()) / 2
    session = ort.InferenceSession(onnx_model, providers=["CPUExecutionProvider"])
    got = session.run(None, {session.get_inputs()[0].name: faces})[0]
    assert got.shape == (len(faces), len(LABELS))
    np.testing.assert_allclose(got, expected, atol=1e-4)
    np.testing.assert_allclose(got.sum(axis=1), 1.0, atol=1e-5)


def test_export_parity_with_keras_on_real_faces(trained: Path, exported: Path) -> None:
    assert_onnx_answers_as_keras(trained / "best.keras", exported, smoothing_sigma=0)


# The lent GPU machine has JAX and no TensorFlow: every Python the script starts gets this, so here too importing
# TensorFlow (or tf2onnx) fails as it would there.
WITHOUT_TENSORFLOW = """
import sys

class Absent:
    def find_spec(self, name, path=None, target=None):
        if name.partition(".")[0] in ("tensorflow", "tf2onnx"):
            raise ModuleNotFoundError(f"No module named {name!r} (as on the GPU machine)")
        return None

sys.meta_path.insert(0, Absent())
"""


def test_the_gpu_path_trains_under_jax_without_tensorflow_then_exports_on_the_cpu(tmp_path: Path) -> None:
    """README's GPU path at tiny scale on the CPU: ``training.carry``, then ``training/device_train.sh`` (JAX,
    TensorFlow unimportable), then the returned .keras exported here by TensorFlow, answering as Keras does.
    On a zip of made faces: carrying the whole FER2013 train split would spend a minute on xz alone."""
    pytest.importorskip("jax", reason="JAX is not installed (pip install -e '.[test]')")
    faces = make_faces(tmp_path / "faces", variants=4)
    dataset = tmp_path / "faces.zip"
    with zipfile.ZipFile(dataset, "w") as archive:
        for path in sorted(faces.rglob("*.*")):
            archive.write(path, path.relative_to(faces).as_posix())
    carry, out, blocker = tmp_path / "carry", tmp_path / "out", tmp_path / "blocker"
    run_module("training.carry", "--data", dataset, "--out", carry, "--no-wheels")
    blocker.mkdir()
    (blocker / "sitecustomize.py").write_text(WITHOUT_TENSORFLOW)
    env = {
        "PYTHON": sys.executable,
        "CARRY": str(carry),
        "OUT": str(out),
        "TMPDIR": str(tmp_path),
        "PYTHONPATH": str(blocker),
        "JAX_PLATFORMS": "cpu",
    }
    tiny = ["--epochs", "2", "--batch-size", "32", "--widths", "8", "16", "32", "64"]
    run_command(["bash", "training/device_train.sh", *tiny], env=env, timeout=600)
    run = out / "run"
    record = json.loads((run / "run.json").read_text())
    assert record["versions"]["backend"] == "jax" and "tensorflow" not in record["versions"]
    assert json.loads((run / "data.json").read_text())["source_sha256"] == sha256_of(dataset)
    assert {path.name for path in run.iterdir()} >= {"best.keras", "averaged.keras", "history.csv", "average.json"}
    assert not (run / "epochs").exists() and not (run / "backup").exists()  # what comes back stays small
    onnx_path = tmp_path / "emotion.onnx"
    export = ("export", "--model", run / "averaged.keras", "--out", onnx_path, "--version", "jax-smoke")
    run_module(*export, "--data", dataset, "--int8", tmp_path / "emotion-int8.onnx")
    assert_onnx_answers_as_keras(run / "averaged.keras", onnx_path, smoothing_sigma=0)
    # The file names the local zip, so the validation split is rebuilt here from the faces it held out there.
    evaluate(onnx_path, dataset, tmp_path / "report", "--split", "validation")
    assert json.loads((tmp_path / "report" / "metrics.json").read_text())["count"] > 0


def test_export_contract_and_metadata_round_trip(trained: Path, exported: Path) -> None:
    session = ort.InferenceSession(exported, providers=["CPUExecutionProvider"])
    (face,) = session.get_inputs()
    assert face.type == "tensor(float)"
    assert face.shape[1:] == [48, 48, 1]
    assert isinstance(face.shape[0], str)  # dynamic batch
    record = json.loads((trained / "run.json").read_text())
    metadata = session.get_modelmeta().custom_metadata_map
    assert json.loads(metadata[MetadataKey.LABELS]) == list(LABELS)
    assert metadata[MetadataKey.VERSION] == "smoke-test"
    assert metadata[MetadataKey.TTA] == "horizontal_flip_mean"
    assert metadata[MetadataKey.SMOOTHING] == "none"  # the default since m4 (export/smoothing.py)
    assert metadata[MetadataKey.DATA_SHA256] == record["data"]["sha256"]
    assert metadata[MetadataKey.COMMAND] == record["command"]
    assert json.loads(metadata[MetadataKey.METRICS]) == record["metrics"]
    sidecar = json.loads(exported.with_suffix(".json").read_text())
    assert sidecar["parity_max_abs_diff"] <= 1e-4
    assert not list(exported.parent.glob(".emotion.*")), "export left a temporary file behind"
    import h5py  # Keras' own dependency, so present with the training extra

    with (
        zipfile.ZipFile(exported.with_suffix(".keras")) as keras_copy,
        h5py.File(io.BytesIO(keras_copy.read("model.weights.h5"))) as weights,
    ):
        assert "optimizer" not in weights, "the Keras copy carries optimizer state (twice the file, no use)"
    assert exported.stat().st_mode & 0o044 == 0o044, "the model must be readable by the service user"


def test_int8_copy_keeps_the_contract_and_the_answers(exported: Path) -> None:
    from deepfer.engine.classifier import EmotionClassifier  # checks the contract and that rows are probabilities

    int8 = exported.with_name("emotion-int8.onnx")
    faces = load_split(COMMITTED_FACES, "test").faces[..., np.newaxis].astype(np.float32)
    reference = EmotionClassifier(exported).run(faces)
    quantised = EmotionClassifier(int8).run(faces)
    np.testing.assert_allclose(quantised.sum(axis=1), 1.0, atol=1e-5)
    assert np.abs(quantised - reference).max() < 0.1
    assert json.loads(int8.with_suffix(".json").read_text())["argmax_agreement_with_float32"] >= 0.8
    assert int8.stat().st_size < exported.stat().st_size / 2


def test_evaluate_writes_the_report(tmp_path: Path, trained: Path, exported: Path, dataset: Path) -> None:
    out = tmp_path / "report"
    evaluate(exported, dataset, out, "--history", trained / "history.csv", "--limit-per-class", "20")
    report = json.loads((out / "metrics.json").read_text())
    assert set(report["per_class"]) == set(LABELS)
    assert 0.0 <= report["accuracy"] <= 1.0
    assert 0.0 <= report["macro_f1"] <= 1.0
    assert np.asarray(report["confusion_matrix"]).sum() == report["count"]
    for figure in ("confusion_matrix.png", "roc.png", "training_curves.png"):
        assert cv2.imread(str(out / figure)) is not None, figure


def test_evaluate_on_validation_scores_exactly_the_faces_training_held_out(
    tmp_path: Path, trained: Path, exported: Path, dataset: Path
) -> None:
    config = json.loads((trained / "run.json").read_text())["config"]
    full = load_split(dataset, "train", config["limit_per_class"])
    _, held = stratified_split(full.labels, config["val_fraction"], config["seed"])
    session = ort.InferenceSession(exported, providers=["CPUExecutionProvider"])
    faces = full.faces[held][..., np.newaxis].astype(np.float32)
    predicted = session.run(None, {session.get_inputs()[0].name: faces})[0].argmax(axis=1)
    expected = np.zeros((len(LABELS), len(LABELS)), dtype=np.int64)
    np.add.at(expected, (full.labels[held], predicted), 1)

    out = tmp_path / "validation"
    evaluate(exported, dataset, out, "--split", "validation")
    report = json.loads((out / "metrics.json").read_text())
    assert report["count"] == len(held)
    np.testing.assert_array_equal(np.asarray(report["confusion_matrix"]), expected)


def test_smoothing_sweep_matches_the_in_graph_smoothing(
    tmp_path: Path, trained: Path, exported: Path, dataset: Path
) -> None:
    """A file exported with ``--smoothing-sigma`` smooths in its graph as OpenCV does and records it; the sweep,
    smoothing with OpenCV outside the default (unsmoothed) graph, scores the validation faces at that sigma as the
    smoothed graph itself does, and it refuses an already smoothed graph."""
    smoothed = tmp_path / "smoothed.onnx"
    sigma = str(V3_SMOOTHING_SIGMA)
    run_module("export", "--model", trained / "best.keras", "--out", smoothed, "--smoothing-sigma", sigma)
    metadata = ort.InferenceSession(smoothed).get_modelmeta().custom_metadata_map
    assert metadata[MetadataKey.SMOOTHING] == f"gaussian_3x3_sigma_{sigma}"
    assert_onnx_answers_as_keras(trained / "best.keras", smoothed, smoothing_sigma=V3_SMOOTHING_SIGMA)
    sweep = tmp_path / "sweep.json"
    command = [sys.executable, "-m", "bench.smoothing_sweep", "--model", exported, "--data", dataset, "--out", sweep]
    run = subprocess.run([*map(str, command), "--sigmas", "0", sigma], cwd=REPO, check=False)
    assert run.returncode == 0
    rows = json.loads(sweep.read_text())["rows"]
    assert [row["sigma"] for row in rows] == [0, V3_SMOOTHING_SIGMA]

    evaluated = tmp_path / "validation"
    evaluate(smoothed, dataset, evaluated, "--split", "validation")
    report = json.loads((evaluated / "metrics.json").read_text())
    # Same faces, same smoothing, same network: at most a borderline face may tip on float rounding.
    assert abs(rows[1]["accuracy"] - report["accuracy"]) <= 1 / report["count"]

    refused = subprocess.run(
        [sys.executable, "-m", "bench.smoothing_sweep", "--model", str(smoothed), "--data", str(dataset)],
        cwd=REPO,
        capture_output=True,
        text=True,
        check=False,
    )
    assert refused.returncode != 0
    assert "without --smoothing-sigma" in refused.stderr


def test_fine_tuning_changes_unfrozen_weights_only(tmp_path: Path, exported: Path) -> None:
    from training.model import load_network

    customer = make_faces(tmp_path / "customer", variants=4)
    for label in LABELS:  # a customer's folder may have no test split
        for path in (customer / "test" / label).iterdir():
            path.unlink()
    tuned = tmp_path / "tuned"
    run_module(
        "training.train",
        "--data",
        customer,
        "--out",
        tuned,
        "--init",
        exported.with_suffix(".keras"),
        "--freeze-blocks",
        "2",
        "--epochs",
        "1",
        "--batch-size",
        "16",
    )
    before = load_network(exported.with_suffix(".keras"))
    after = load_network(tuned / "best.keras")
    for frozen in ("block1_a_conv", "block2_b_conv"):
        np.testing.assert_array_equal(before.get_layer(frozen).kernel.numpy(), after.get_layer(frozen).kernel.numpy())
    for trainable in ("block4_b_conv", "head_dense"):
        assert not np.allclose(before.get_layer(trainable).kernel.numpy(), after.get_layer(trainable).kernel.numpy())
    # and again from that run's own checkpoint, whose optimizer carries the one-cycle schedule Keras cannot rebuild
    again = tmp_path / "again"
    run_module("training.train", "--data", customer, "--out", again, "--init", tuned / "best.keras", "--epochs", "1")
    assert (again / "best.keras").is_file()
    assert json.loads((tuned / "run.json").read_text())["config"]["init"] == str(exported.with_suffix(".keras"))


def test_a_model_without_a_run_record_is_checked_on_noise_and_never_calibrated_on_it() -> None:
    from export.faces import ExportError, record_faces

    noise = record_faces({}, "test", per_class=1)
    assert noise.shape == (64, 48, 48, 1) and noise.dtype == np.float32
    assert noise.min() >= 0 and noise.max() <= 255
    with pytest.raises(ExportError, match="no data path"):  # a library error; python -m export reports it
        record_faces({}, "train", per_class=1)


def test_calibration_puts_the_fitted_temperature_into_the_graph(tmp_path: Path, trained: Path, dataset: Path) -> None:
    """calibrate fits T on validation; export --calibration then outputs exactly softmax(log p / T) of the raw
    graph, and records T; a second fit on the calibrated file is refused (it would stack temperatures)."""
    from training.calibration import apply_temperature

    raw = tmp_path / "raw.onnx"
    run_module("export", "--model", trained / "best.keras", "--out", raw)
    run_module("training.fit_temperature", "--model", raw, "--data", dataset, "--out", tmp_path / "calibration")
    fitted = json.loads((tmp_path / "calibration" / "temperature.json").read_text())
    assert 0.25 <= fitted["temperature"] <= 8.0
    assert fitted["fitted_on"]["split"] == "validation"
    assert (tmp_path / "calibration" / "reliability_validation.png").is_file()
    calibrated = tmp_path / "calibrated.onnx"
    calibration = tmp_path / "calibration" / "temperature.json"
    run_module("export", "--model", trained / "best.keras", "--out", calibrated, "--calibration", calibration)

    faces = load_split(COMMITTED_FACES, "test").faces[..., np.newaxis].astype(np.float32)
    before, after = (ort.InferenceSession(p) for p in (raw, calibrated))
    raw_answers = before.run(None, {"face": faces})[0]
    np.testing.assert_allclose(
        after.run(None, {"face": faces})[0], apply_temperature(raw_answers, fitted["temperature"]), atol=1e-4
    )
    metadata = after.get_modelmeta().custom_metadata_map
    assert float(metadata[MetadataKey.TEMPERATURE]) == pytest.approx(fitted["temperature"], rel=1e-5)
    assert metadata[MetadataKey.CROP] == f"centre_{TrainConfig().crop}"  # the run trained with the default crop
    again = subprocess.run(
        [sys.executable, "-m", "training.fit_temperature", "--model", calibrated, "--data", dataset, "--out", tmp_path],
        cwd=REPO,
        capture_output=True,
        text=True,
        check=False,
    )
    assert again.returncode != 0 and "already holds temperature" in again.stderr


def test_conditions_and_weight_averaging_run_as_documented(
    tmp_path: Path, trained: Path, exported: Path, dataset: Path
) -> None:
    from training.conditions import CONDITIONS

    out = tmp_path / "conditions"
    evaluate(exported, dataset, out, "--split", "validation", "--conditions")
    rows = json.loads((out / "conditions.json").read_text())
    assert set(rows) == {"clean", *CONDITIONS}
    assert rows["clean"]["accuracy"] == json.loads((out / "metrics.json").read_text())["accuracy"]

    run_module("training.average", "--run", trained, "--last", "1")
    summary = json.loads((trained / "average.json").read_text())
    assert set(summary["validation_accuracy"]) == {"best.keras", "last_1_epochs"}
    assert (trained / "averaged.keras").is_file()


def test_stamp_writes_the_files_own_evaluation_into_its_metadata(tmp_path: Path, exported: Path, dataset: Path) -> None:
    import shutil

    from deepfer.engine.classifier import EmotionClassifier

    model = tmp_path / "emotion.onnx"
    shutil.copy(exported, model)
    shutil.copy(exported.with_suffix(".json"), model.with_suffix(".json"))
    report = tmp_path / "report"
    evaluate(model, dataset, report, "--split", "validation")
    run_module("export.stamp", "--model", model, "--report", report)
    scored = json.loads((report / "metrics.json").read_text())
    served = EmotionClassifier(model).model.metrics
    assert served["evaluation"]["validation"]["accuracy"] == scored["accuracy"]
    assert served["evaluation"]["validation"]["count"] == scored["count"]
    assert json.loads(model.with_suffix(".json").read_text())["metrics"] == served

    other = tmp_path / "other"
    evaluate(exported.with_name("emotion-int8.onnx"), dataset, other, "--split", "validation")
    refused = subprocess.run(
        [sys.executable, "-m", "export.stamp", "--model", str(model), "--report", str(other)],
        cwd=REPO,
        capture_output=True,
        text=True,
        check=False,
    )
    assert refused.returncode != 0 and "scored another graph" in refused.stderr


def test_a_carried_run_is_never_exported_against_other_data(tmp_path: Path, dataset: Path) -> None:
    from export.faces import ExportError, on_local_data

    record = {"data": {"path": "/tmp/deepfer-data", "sha256": "f" * 64}}
    with pytest.raises(ExportError, match=r"data\.json"):
        on_local_data(record, tmp_path / "averaged.keras", dataset)
    (tmp_path / "data.json").write_text(json.dumps({"source_sha256": "0" * 64}))
    with pytest.raises(ExportError, match="not the data this run was carried from"):
        on_local_data(record, tmp_path / "averaged.keras", dataset)
    (tmp_path / "data.json").write_text(json.dumps({"source_sha256": sha256_of(dataset)}))
    local = on_local_data(record, tmp_path / "averaged.keras", dataset)["data"]
    assert local["path"] == str(dataset) and local["sha256"] == sha256_of(dataset)
    assert local["trained_on"] == record["data"]


def test_the_served_files_recorded_command_still_trains_its_recipe() -> None:
    """The served file's own ``training_command``, replayed under today's defaults, parses to the recipe it was
    trained with, so the rebuild command of docs/model.md still means what it meant (a changed default would
    silently change it). Without a teacher or the long schedule, the plain command is m4's 60-epoch recipe with
    label smoothing 0.15; a 10-epoch fine-tune keeps the schedule's shape: 15% warm-up, a tenth of the lr."""
    from training.train import parse_args

    served = ort.InferenceSession(str(REPO / "service" / "deepfer" / "models" / "emotion-int8.onnx"))
    metadata = served.get_modelmeta().custom_metadata_map
    recipe = json.loads(metadata[MetadataKey.CONFIG])
    command = shlex.split(metadata[MetadataKey.COMMAND])
    assert command[:3] == ["python", "-m", "training.train"], command
    _, config = parse_args(command[3:])
    assert json.loads(config.to_json()) == recipe
    _, plain = parse_args(["--data", "fer2013.zip", "--out", "runs/y"])
    assert (plain.teacher, plain.label_smoothing, plain.epochs, plain.warmup_epochs) == (None, 0.15, 60, 9)
    long_schedule = {"epochs": 120, "warmup_epochs": 15, "patience": 120}
    twin = replace(plain, **long_schedule, seed=config.seed, mixed_precision=config.mixed_precision)
    assert replace(twin, teacher=config.teacher, label_smoothing=config.label_smoothing) == config
    _, tune = parse_args(["--data", "mine", "--out", "runs/y", "--init", "emotion.keras", "--epochs", "10"])
    assert (tune.warmup_epochs, tune.learning_rate) == (2, plain.learning_rate / 10)


def test_a_one_cycle_run_finishes_with_its_metrics_recorded(tmp_path: Path, dataset: Path) -> None:
    """The one-cycle schedule is a custom Keras object: scoring the best checkpoint must not need to rebuild it
    (a 40-epoch run ended in a deserialisation error after its last epoch, with no metrics in run.json)."""
    run = tmp_path / "run"
    tiny = ["--epochs", "2", "--warmup-epochs", "1", "--batch-size", "32", "--widths", "8", "16", "32", "64"]
    run_module(
        "training.train", "--data", dataset, "--out", run, "--schedule", "one_cycle", "--limit-per-class", "20", *tiny
    )
    record = json.loads((run / "run.json").read_text())
    assert record["config"]["schedule"] == "one_cycle"
    assert 0.0 <= record["metrics"]["val_accuracy"] <= 1.0
    # The data has a test split, counted but never scored by a run: PublicTest is scored once per shipped file.
    assert record["data"]["test"] and set(record["metrics"]) == {"val_accuracy", "train_seconds"}


def test_a_distilled_run_learns_from_the_teachers_answers_on_its_own_training_faces(
    tmp_path: Path, dataset: Path, exported: Path
) -> None:
    """``--teacher``: the teacher's probabilities on exactly the run's training faces, cached under the teacher's
    hash, recorded with the run and in the exported student's metadata; validation still scored on the labels, and
    no label smoothing unless asked for (the teacher's probabilities soften the target)."""
    run = tmp_path / "student"
    tiny = ["--epochs", "1", "--batch-size", "32", "--widths", "8", "16", "32", "64", "--limit-per-class", "20"]
    teacher = exported.with_name("emotion-int8.onnx")
    run_module("training.train", "--data", dataset, "--out", run, "--teacher", teacher, "--teacher-weight", "1", *tiny)
    record = json.loads((run / "run.json").read_text())
    assert record["teacher"] == {"path": str(teacher), "sha256": sha256_of_file(teacher)}
    assert record["config"]["teacher_weight"] == 1.0 and 0.0 <= record["metrics"]["val_accuracy"] <= 1.0
    assert record["config"]["label_smoothing"] == 0.0
    student = tmp_path / "student.onnx"
    run_module("export", "--model", run / "best.keras", "--out", student)
    metadata = ort.InferenceSession(str(student)).get_modelmeta().custom_metadata_map
    assert json.loads(metadata[MetadataKey.TEACHER]) == {**record["teacher"], "weight": 1.0}
    (cache,) = run.glob("teacher-*.npy")
    full = load_split(dataset, "train", 20)
    keep, _ = stratified_split(full.labels, record["config"]["val_fraction"], record["config"]["split_seed"])
    faces = full.faces[keep]
    cached = np.load(cache)
    session = ort.InferenceSession(str(teacher), providers=["CPUExecutionProvider"])
    (direct,) = session.run(None, {session.get_inputs()[0].name: faces[:16, ..., np.newaxis].astype(np.float32)})
    assert cached.shape == (len(faces), len(LABELS))
    np.testing.assert_allclose(cached[:16], direct, atol=1e-6)


def test_soft_targets_mix_label_and_teacher_by_the_teachers_weight() -> None:
    from training.distill import soft_targets

    labels = np.array([0, 3])
    teacher = np.full((2, len(LABELS)), 1 / len(LABELS), dtype=np.float32)
    np.testing.assert_allclose(soft_targets(labels, teacher, 0.0), np.eye(len(LABELS))[labels])
    np.testing.assert_allclose(soft_targets(labels, teacher, 1.0), teacher)
    mixed = soft_targets(labels, teacher, 0.7)
    assert mixed[1, 3] == pytest.approx(0.3 + 0.7 / len(LABELS)) and np.allclose(mixed.sum(axis=1), 1.0)
    with pytest.raises(ValueError, match="teacher_weight"):
        soft_targets(labels, teacher, 1.5)


def test_the_residual_variant_trains_exports_and_quantises(tmp_path: Path, dataset: Path, exported: Path) -> None:
    """``--residual``: skip connections survive the export and the int8 copy, and both files answer like Keras."""
    import onnx

    run = tmp_path / "residual"
    tiny = ["--epochs", "1", "--batch-size", "32", "--widths", "8", "16", "32", "64", "--limit-per-class", "20"]
    run_module("training.train", "--data", dataset, "--out", run, "--residual", *tiny)
    assert json.loads((run / "run.json").read_text())["config"]["residual"] is True
    onnx_path, int8_path = run / "emotion.onnx", run / "emotion-int8.onnx"
    run_module("export", "--model", run / "best.keras", "--out", onnx_path, "--version", "res", "--int8", int8_path)

    def adds(path: Path) -> int:
        return sum(node.op_type == "Add" for node in onnx.load(str(path)).graph.node)

    assert adds(onnx_path) - adds(exported) >= 4  # one skip connection per stage beyond the plain network's adds
    faces = load_split(dataset, "test", 2).faces[..., np.newaxis].astype(np.float32)
    for path in (onnx_path, int8_path):
        session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
        (probabilities,) = session.run(None, {session.get_inputs()[0].name: faces})
        assert probabilities.shape == (len(faces), len(LABELS))
        np.testing.assert_allclose(probabilities.sum(axis=1), 1.0, atol=1e-4)
