"""The Python package against the CLI on the same inputs, attacks checked independently of the
records they report, errors, and memory over repeated calls."""

import threading

import numpy as np
import pytest

import faultline
from conftest import (
    DEMO_DATA,
    DEMO_MODEL,
    REPO,
    assert_close,
    read_json,
    read_jsonl,
    rss_mib,
)


def test_evaluate_equals_the_cli_and_arrays_equal_the_path(cli, model, batch, tmp_path):
    cli("eval", "-m", DEMO_MODEL, "-d", DEMO_DATA, "--limit", 100, "-o", tmp_path / "cli")
    want = read_json(tmp_path / "cli" / "run.json")
    got = faultline.evaluate(model, DEMO_DATA, limit=100, progress=False)
    assert got["clean_accuracy"] == want["clean_accuracy"]
    assert got["results"] == want["results"]
    assert got["model"]["sha256"] == want["model"]["sha256"]
    # The same samples as arrays: the same figures.
    x, y = batch
    arrays = faultline.evaluate(model, x, y, progress=False)
    assert arrays["results"]["confusion"] == want["results"]["confusion"]
    assert arrays["mean_logit_margin"] == pytest.approx(want["mean_logit_margin"], abs=1e-6)
    # Model.logits gives the CLI's per-sample predictions and margins.
    recs = sorted(read_jsonl(tmp_path / "cli" / "samples.jsonl"), key=lambda r: r["index"])
    z = model.logits(x)
    assert [r["prediction"] for r in recs] == model.predict(x).tolist()
    top_other = np.where(np.eye(z.shape[1], dtype=bool)[y], -np.inf, z).max(axis=1)
    assert_close([r["logit_margin"] for r in recs], z[np.arange(len(y)), y] - top_other, 1e-5)


def test_report_to_pandas(model, batch):
    pd = pytest.importorskip("pandas")
    x, y = batch
    r = faultline.evaluate(model, x[:20], y[:20], progress=False)
    per_class = r.to_pandas("results.per_class")
    assert isinstance(per_class, pd.DataFrame) and len(per_class) == 10
    assert r.to_pandas()["clean_accuracy"][0] == r["clean_accuracy"]


def test_attack_equals_the_cli_and_stays_in_its_ball(cli, model, batch, tmp_path):
    args = ["--attack", "apgd-ce", "--steps", 10, "--seed", 3, "--limit", 30]
    cli("attack", "-m", DEMO_MODEL, "-d", DEMO_DATA, *args, "-o", tmp_path / "cli")
    want = read_json(tmp_path / "cli" / "run.json")
    got = faultline.attack(
        model, DEMO_DATA, attack="apgd-ce", steps=10, seed=3, limit=30, progress=False
    )
    assert got.robust_accuracy == want["robust_accuracy"]
    assert got.clean_accuracy == want["clean_accuracy"]
    # Checked here, not taken from the records: the images lie in the ε-ball and the pixel
    # range, their norms are those reported, and every success is misclassified.
    x, y = next(iter(faultline.load_data(DEMO_DATA, limit=30, batch_size=30)))
    assert np.array_equal(got.labels, y)
    eps = 8 / 255
    delta = (got.adversarial - x).reshape(len(y), -1)
    assert np.abs(delta).max() <= eps + 1e-6
    assert got.adversarial.min() >= 0 and got.adversarial.max() <= 1
    assert_close(np.abs(delta).max(axis=1), got.norms, 1e-6)
    pred = model.predict(got.adversarial)
    assert np.array_equal(pred != y, got.success)
    assert got.success.sum() > 0
    assert 1 - got.success.mean() == pytest.approx(got.robust_accuracy)
    # Arrays give what the path gives: sample i of an array is data-set index i, whose random
    # stream the attack draws from, so the same images come out for the first 30 samples.
    first = faultline.attack(
        model, DEMO_DATA, attack="apgd-ce", steps=10, seed=3, limit=30, subset="first",
        progress=False,
    )
    x, y = next(iter(faultline.load_data(DEMO_DATA, limit=30, subset="first", batch_size=30)))
    arrays = faultline.attack(model, x, y, attack="apgd-ce", steps=10, seed=3, progress=False)
    assert arrays.robust_accuracy == first.robust_accuracy
    assert np.array_equal(arrays.adversarial, first.adversarial)


def test_l2_attack_over_several_radii(model, batch):
    x, y = batch[0][:16], batch[1][:16]
    r = faultline.attack(
        model, x, y, attack="pgd", norm="l2", eps=[0.1, "1/4"], steps=5, progress=False
    )
    assert r.adversarial.shape == (2, 16, 3, 32, 32)
    for k, eps in enumerate([0.1, 0.25]):
        d = np.sqrt(((r.adversarial[k] - x) ** 2).reshape(16, -1).sum(axis=1))
        assert (d <= eps * (1 + 1e-4)).all()
        assert np.array_equal(model.predict(r.adversarial[k]) != y, r.success[k])
    assert set(r.robust_accuracy) == {"0.1", "0.25"} or len(r.robust_accuracy) == 2


def test_corrupt_is_what_evaluate_applies(model, batch):
    x, y = batch[0][:20], batch[1][:20]
    fog = faultline.corrupt(x, "gaussian_noise", 3, seed=5)
    assert fog.shape == x.shape and fog.dtype == np.float32
    assert not np.array_equal(fog, x)
    assert np.array_equal(fog, faultline.corrupt(x, "gaussian_noise", 3, seed=5))
    r = faultline.evaluate(
        model, x, y, corruptions="gaussian_noise", severities="3", seed=5, progress=False
    )
    acc = r["corruptions"]["table"][0]["accuracy"]
    assert acc == pytest.approx((model.predict(fog) == y).mean())


def test_input_grad_matches_finite_differences(model, batch):
    x, y = batch[0][:2].astype(np.float64), batch[1][:2]
    g = model.input_grad(x, y)
    rng = np.random.default_rng(0)
    v = rng.standard_normal(x.shape)
    v /= np.linalg.norm(v)
    h = 1e-2
    up = model.loss(x + h * v, y).astype(np.float64)
    down = model.loss(x - h * v, y).astype(np.float64)
    fd = (up - down) / (2 * h)
    analytic = (g * v).reshape(2, -1).sum(axis=1)
    assert_close(analytic, fd, 2e-2)


def test_features_and_model_card(model, batch):
    f = model.features(batch[0][:3])
    assert f.shape == (3, 64)
    assert model.card["num_classes"] == 10
    assert model.tap_names


def test_bad_input_raises_the_library_messages(cli, model, batch, tmp_path):
    x, y = batch
    with pytest.raises(faultline.FileNotFound) as e:
        faultline.Model(tmp_path / "missing.onnx")
    assert isinstance(e.value, FileNotFoundError)
    with pytest.raises(FileNotFoundError):
        faultline.evaluate(model, tmp_path / "missing", progress=False)
    with pytest.raises(ValueError, match="unknown attack 'nope'"):
        faultline.attack(model, x, y, attack="nope", progress=False)
    with pytest.raises(faultline.InvalidInput, match="unknown corruption 'nope'"):
        faultline.corrupt(x, "nope", 1)
    with pytest.raises(faultline.InvalidInput, match="label -1 of sample 0"):
        faultline.evaluate(model, x[:1], [-1], progress=False)
    with pytest.raises(faultline.InvalidInput, match="out of range"):
        faultline.evaluate(model, x[:1], [10], classes=[str(i) for i in range(10)], progress=False)
    with pytest.raises(faultline.InvalidInput, match="outside"):
        faultline.evaluate(model, x[:1] * 255, y[:1], progress=False)
    with pytest.raises(faultline.InvalidInput):
        model.logits(x[:, :1])  # one channel for a three-channel model
    with pytest.raises(faultline.InvalidInput, match="N x C x H x W"):
        model.logits(x[0])
    # The message is the CLI's, word for word.
    p = cli("attack", "-m", DEMO_MODEL, "-d", DEMO_DATA, "--eps", "2", "--limit", 1, check=False)
    assert p.returncode != 0
    with pytest.raises(faultline.Error) as e:
        faultline.attack(model, x[:1], y[:1], attack="pgd", eps=2, progress=False)
    assert str(e.value) in p.stderr
    assert str(e.value).startswith("--eps: 2 exceeds the pixel range")


def test_threads_and_concurrent_calls(batch):
    x = batch[0][:32]
    one = faultline.Model(DEMO_MODEL, threads=1)
    two = faultline.Model(DEMO_MODEL, threads=2)
    want = one.logits(x)
    out = [None] * 4

    def work(i):
        out[i] = two.logits(x)

    ts = [threading.Thread(target=work, args=(i,)) for i in range(4)]
    for t in ts:
        t.start()
    for t in ts:
        t.join()
    for o in out:
        assert_close(o, want, 1e-5)
    with pytest.raises(faultline.InvalidInput, match="threads"):
        faultline.Model(DEMO_MODEL, threads=0)


def test_no_memory_growth_over_repeated_calls(model, batch):
    x, y = batch
    for _ in range(20):
        model.logits(x)
        faultline.evaluate(model, x[:20], y[:20], progress=False)
    before = rss_mib()
    for _ in range(150):
        model.logits(x)
        model.input_grad(x[:8], y[:8])
    for _ in range(20):
        faultline.evaluate(model, x[:20], y[:20], progress=False)
    grown = rss_mib() - before
    # 150 batches of images, logits and gradients pass through (~190 MiB of input alone, as
    # the arrays handed to the engine are copied into its chunks); a leak of them would show.
    assert grown < 40, f"resident memory grew by {grown:.1f} MiB"


def test_data_loader_batches(batch):
    dl = faultline.load_data(DEMO_DATA, limit=25, batch_size=10)
    assert len(dl) == 3 and dl.num_samples == 25
    parts = list(dl)
    assert [len(b[1]) for b in parts] == [10, 10, 5]
    assert parts[0][0].dtype == np.float32 and parts[0][0].shape[1:] == (3, 32, 32)
    assert dl.class_names[0] == "airplane"


def test_from_torch_gives_the_torch_logits():
    torch = pytest.importorskip("torch")
    pytest.importorskip("onnx")
    torch.manual_seed(0)
    net = torch.nn.Sequential(
        torch.nn.Conv2d(3, 4, 3, padding=1),
        torch.nn.ReLU(),
        torch.nn.Flatten(),
        torch.nn.Linear(4 * 8 * 8, 5),
    )
    x = torch.rand(6, 3, 8, 8)
    m = faultline.from_torch(net, x[:2])
    with torch.no_grad():
        want = net(x).numpy()
    assert_close(m.logits(x.numpy()), want, 1e-4)


def test_calibrate_equals_the_cli(cli, tmp_path):
    shared = REPO.parent / "shared"
    m = shared / "models" / "mnist" / "mnist-lenet5-clean.onnx"
    d = shared / "data" / "mnist" / "t10k-images-idx3-ubyte.gz"
    if not (m.is_file() and d.is_file()):
        pytest.skip("../shared is not beside the repository")
    flags = ["--limit", 128, "--epochs", 1, "--batch-size", 32, "--test-limit", 100]
    flags += ["--seen", "gaussian_blur", "--unseen", "fog", "--severities", 5]
    flags += ["--width", 4, "--blocks", 1]
    cli("calibrate", "-m", m, "-d", d, "--test", d, *flags, "-o", tmp_path / "cli")
    want = read_json(tmp_path / "cli" / "run.json")
    got = faultline.calibrate(
        m, d, d, out=tmp_path / "py", limit=128, epochs=1, batch_size=32, test_limit=100,
        seen="gaussian_blur", unseen=["fog"], severities="5", width=4, blocks=1, progress=False,
    )
    assert got["models"][0]["clean"] == want["models"][0]["clean"]
    assert got["models"][0]["families"] == want["models"][0]["families"]
    for f in ("calibrator.onnx", "combined.onnx"):
        assert (tmp_path / "py" / f).read_bytes() == (tmp_path / "cli" / f).read_bytes()
