"""fastinit.cli.rendering: outputs are written whole into existing folders, the renderings
name a CUDA device with its index, a one-size plot shows every line as a marker."""
from __future__ import annotations

from fastinit.cli import main
from fastinit.cli import rendering as R
from tests.cli_helpers import QUICK_BENCH, assert_png, fake_run


def test_outputs_are_written_whole_into_existing_folders(tmp_path, capsys):
    paths = {f: str(tmp_path / n) for f, n in (("--json", "r.json"), ("--csv", "r.csv"),
                                                ("--markdown", "R.md"))}
    argv = QUICK_BENCH + [x for f, p in paths.items() for x in (f, p)]
    assert main(argv) == 0
    assert sorted(p.name for p in tmp_path.iterdir()) == ["R.md", "r.csv", "r.json"]
    assert (tmp_path / "R.md").stat().st_mode & 0o777 == (tmp_path / "r.json").stat().st_mode & 0o777


def test_renderings_name_the_cuda_device_with_its_index():
    run = fake_run()
    assert R.machine_line(run.machine).startswith("cuda:3: NVIDIA H100")
    assert R.device_text(run.machine) == "cuda:3 (NVIDIA H100 80GB HBM3)"
    assert "(cuda:3)" in R.to_markdown(run).splitlines()[0]
    assert any("(cuda:3," in t.get_text() for t in R.throughput_figure(run).texts)


def test_single_size_plot_shows_torch_and_the_roofline(tmp_path):
    run = fake_run(sizes=(1 << 20,))
    fig = R.throughput_figure(run)
    for ax in fig.axes:
        if not ax.get_lines():
            continue
        labels = {line.get_label(): line for line in ax.get_lines()}
        for label in ("write roofline: zero_()", "torch.nn.init.normal_", "fastinit.normal_"):
            line = labels[label]
            assert len(line.get_xdata()) == 1  # one point: visible only as a marker
            assert line.get_marker() not in (None, "", " ", "None") and line.get_markersize() > 0
            lo, hi = ax.get_xlim()
            assert lo < line.get_xdata()[0] < hi
    path = R.plot_throughput(run, str(tmp_path / "one.png"))
    assert_png(path)
