"""``make lab`` as a researcher uses it: JupyterLab in a real browser, notebook 01 run from the UI.

papermill (``tests/test_notebooks.py``) and nbval run the notebooks headless; this runs the
interactive path the README's "Open the notebooks" section describes, and checks that the
section stays true:

- the command it names (``make lab``) starts JupyterLab on ``notebooks/``, bound to
  127.0.0.1 only, refusing requests without the token, offering the project's kernel;
- notebook 01, opened from JupyterLab's file browser and run with Run > Run All Cells in
  Chromium, finishes with no error shown, renders its progress bars as widgets and prints
  the same metrics as a papermill run of the same notebook; run again, it reads its
  finished training runs back instead of retraining them;
- its profile switch and the executed ``cpu`` copies it points to are what it says.

The browser is Debian's Chromium (``.ci/run`` installs it), driven by Playwright through
``executable_path``: Playwright's own browser download needs a server CI cannot reach.
Without a browser the browser test skips locally, and fails under ``CI=true``, where it
must run. Nothing is written into the repository: the server's notebooks write under
this module's temporary ``$FUSNET_OUTPUT_ROOT``, its Jupyter config, data and runtime
folders are temporary too, and JupyterLab's autosave is off there, so the committed
notebook is never saved over (checked).
"""

from __future__ import annotations

import ast
import hashlib
import json
import logging
import os
import re
import shlex
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import REPO_ROOT

logger = logging.getLogger(__name__)

NOTEBOOK = "01_main_results"
NOTEBOOK_DIR = REPO_ROOT / "notebooks"
KERNELSPEC = {"display_name": "Python 3 (fusnet)", "language": "python", "name": "fusnet"}
STAMP = ".venv/.fusnet-installed"
"""``make -o`` this: the test never rebuilds ``.venv`` under the running suite."""
BROWSERS = ("chromium", "chromium-browser", "google-chrome", "google-chrome-stable")
PANEL = ".jp-NotebookPanel:not(.lm-mod-hidden)"
"""The notebook tab in front (JupyterLab keeps other tabs in the DOM, hidden)."""
RUN_ALL_TIMEOUT_MS = 15 * 60 * 1000
"""Notebook 01 on the smoke profile takes well under a minute on two cores."""
URL = re.compile(r"http://127\.0\.0\.1:(\d+)/lab\?token=(\w+)")


# --- what the README says -------------------------------------------------------------------


def readme_section() -> str:
    """The README's "Open the notebooks" section, up to the next section."""
    text = (REPO_ROOT / "README.md").read_text()
    match = re.search(r"^## Open the notebooks\n(.*?)(?=^## )", text, flags=re.M | re.S)
    assert match, "README.md has no '## Open the notebooks' section"
    return match.group(1)


def readme_command() -> list[str]:
    """The command in the section's code block (its first line, comment dropped)."""
    block = re.search(r"```bash\n(.*?)```", readme_section(), flags=re.S)
    assert block, "the 'Open the notebooks' section has no bash block"
    return shlex.split(block.group(1).strip().splitlines()[0].split("#", 1)[0])


def test_the_readme_names_make_lab_and_make_lab_runs_the_launcher():
    assert readme_command() == ["make", "lab"]
    if shutil.which("make") is None:
        pytest.skip("no make on this machine")
    dry = subprocess.run(["make", "-n", "-o", "venv", "lab", "LAB_PORT=9999"], cwd=REPO_ROOT,
                         text=True, capture_output=True, check=True).stdout
    assert 'LAB_PORT="9999" bash scripts/lab.sh' in dry.splitlines()
    launcher = (REPO_ROOT / "scripts" / "lab.sh").read_text()
    assert "--ServerApp.ip=127.0.0.1" in launcher and "c.IdentityProvider.token" in launcher


def test_every_notebook_names_the_project_kernel():
    for path in sorted(NOTEBOOK_DIR.glob("*.ipynb")):
        assert json.loads(path.read_text())["metadata"]["kernelspec"] == KERNELSPEC, path.name


def test_make_venv_registers_the_kernel_inside_the_venv():
    makefile = (REPO_ROOT / "Makefile").read_text()
    stamp_rule = makefile.split("\n$(STAMP):", 1)[1].split("\n\n", 1)[0]
    assert "ipykernel install --sys-prefix --name $(KERNEL)" in stamp_rule
    assert re.search(rf"^KERNEL := {KERNELSPEC['name']}$", makefile, flags=re.M)
    assert re.search(rf"^KERNEL_DISPLAY := {re.escape(KERNELSPEC['display_name'])}$", makefile,
                     flags=re.M)
    venv = REPO_ROOT / ".venv"
    if not venv.is_dir() or not Path(sys.prefix).samefile(venv):
        pytest.skip(f"not running in {venv} (make venv registers the kernel there)")
    from jupyter_client.kernelspec import KernelSpecManager

    spec = KernelSpecManager().get_kernel_spec(KERNELSPEC["name"])
    assert Path(spec.resource_dir).resolve().is_relative_to(venv.resolve())  # --sys-prefix
    assert Path(spec.argv[0]).parent.samefile(venv / "bin")  # this environment's Python
    assert spec.display_name == KERNELSPEC["display_name"]


def test_the_readme_profile_switch_and_cpu_copies_are_true():
    import papermill

    from fusnet.experiments.profiles import NOTEBOOKS, notebook_parameters

    section = readme_section()
    assert "the `smoke` profile" in section
    for name in NOTEBOOKS:
        declared = papermill.inspect_notebook(str(NOTEBOOK_DIR / f"{name}.ipynb"))
        assert ast.literal_eval(declared["profile"]["default"]) == "smoke", name
    # "for notebook 01 under `cpu`, `profile = "cpu"` and `datasets = [...]`, the rest as it is"
    said = {k: ast.literal_eval(v) for k, v in re.findall(r"`(\w+) = ([^`]+)`", section)}
    assert set(said) >= {"profile", "datasets"}, said
    cpu = notebook_parameters("cpu", NOTEBOOK)
    defaults = papermill.inspect_notebook(str(NOTEBOOK_DIR / f"{NOTEBOOK}.ipynb"))
    for key, value in cpu.items():
        if key == "output_root":
            continue
        expected = said[key] if key in said else ast.literal_eval(defaults[key]["default"])
        assert value == expected, key
    # "`results/<notebook>/cpu/<notebook>.ipynb` (all but 10_search_your_images, ...)"
    assert "results/<notebook>/cpu/<notebook>.ipynb" in section
    all_but = re.search(r"\(all but\s+([^)]*)\)", section)
    not_there = set(re.findall(r"\b\d\d_\w+", all_but.group(1))) if all_but else set()
    for name in NOTEBOOKS:
        copy = REPO_ROOT / "results" / name / "cpu" / f"{name}.ipynb"
        assert copy.is_file() == (name not in not_there), copy
        if copy.is_file():
            assert json.loads(copy.read_text())["metadata"]["papermill"]["parameters"][
                "profile"] == "cpu", copy


# --- the server -----------------------------------------------------------------------------


@dataclass
class Lab:
    """A running ``make lab`` server."""

    url: str
    """The URL it printed: ``http://127.0.0.1:<port>/lab?token=<token>``."""
    base: str
    token: str
    port: int
    log: Path
    results: Path
    """``$FUSNET_OUTPUT_ROOT`` of its kernels."""

    def log_tail(self) -> str:
        return self.log.read_text(errors="replace")[-4000:]


class _NoRedirect(urllib.request.HTTPRedirectHandler):
    """Report a redirect (to the login page) instead of following it."""

    def redirect_request(self, *args: Any, **kwargs: Any) -> None:
        return None


_OPENER = urllib.request.build_opener(_NoRedirect)


def _get(url: str, token: str | None = None) -> tuple[int, str]:
    """(status, Location header) of a GET, redirects not followed."""
    headers = {"Authorization": f"token {token}"} if token else {}
    try:
        with _OPENER.open(urllib.request.Request(url, headers=headers), timeout=30) as response:
            return response.status, response.headers.get("Location", "")
    except urllib.error.HTTPError as error:
        return error.code, error.headers.get("Location", "")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _write_json(path: Path, value: Any) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(value))


def _stop(process: subprocess.Popen[bytes], base: str | None, token: str | None) -> None:
    """Shut the server down through its API (it stops its kernels), else signal its group."""
    if process.poll() is None and base and token:
        request = urllib.request.Request(f"{base}/api/shutdown", method="POST",
                                         headers={"Authorization": f"token {token}"})
        try:
            urllib.request.urlopen(request, timeout=10).close()
        except OSError as error:
            logger.warning("POST /api/shutdown: %s", error)
    try:
        process.wait(timeout=30)
        return
    except subprocess.TimeoutExpired:
        pass
    for sig in (signal.SIGTERM, signal.SIGKILL):
        try:
            os.killpg(process.pid, sig)  # make, lab.sh and jupyter: the group we started
        except ProcessLookupError:
            return
        try:
            process.wait(timeout=15)
            return
        except subprocess.TimeoutExpired:
            continue


@pytest.fixture(scope="module")
def lab(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Lab]:
    """The README's command (``make lab``) on a free loopback port, in temporary Jupyter
    folders: autosave off (the committed notebooks are served from the repository), no news
    prompt, and the notebooks' outputs under a temporary ``$FUSNET_OUTPUT_ROOT``."""
    if shutil.which("make") is None:
        _unavailable("no make on this machine")
    home = tmp_path_factory.mktemp("lab")
    config = home / "config"
    # JupyterLab checkpoints a notebook it opens beside it (notebooks/.ipynb_checkpoints):
    # here into the temporary folder (jupyter_config.py: lab.sh's --config replaces only the
    # server's own config file)
    (config / "jupyter_config.py").parent.mkdir(parents=True)
    (config / "jupyter_config.py").write_text(
        f"c.FileCheckpoints.checkpoint_dir = {str(home / 'checkpoints')!r}\n")
    settings = config / "lab" / "user-settings" / "@jupyterlab"
    _write_json(settings / "docmanager-extension" / "plugin.jupyterlab-settings",
                {"autosave": False})
    _write_json(settings / "apputils-extension" / "notification.jupyterlab-settings",
                {"fetchNews": "false", "checkForUpdates": False})
    env = {
        **os.environ,
        "FUSNET_OUTPUT_ROOT": str(home / "results"),
        "JUPYTER_CONFIG_DIR": str(config),
        "JUPYTER_DATA_DIR": str(home / "data"),
        "JUPYTER_RUNTIME_DIR": str(home / "runtime"),
    }
    for name in ("FUSNET_CACHE_DIR", "JUPYTER_TOKEN", "JUPYTER_TOKEN_FILE", "MAKEFLAGS"):
        env.pop(name, None)
    port = _free_port()
    log = home / "lab.log"
    with log.open("wb") as out:
        process = subprocess.Popen(
            [*readme_command(), "--no-print-directory", "-o", STAMP, f"LAB_PORT={port}"],
            cwd=REPO_ROOT, env=env, stdin=subprocess.DEVNULL, stdout=out,
            stderr=subprocess.STDOUT, start_new_session=True,
        )
    base = token = None
    try:
        deadline = time.monotonic() + 180
        match = None
        while match is None:
            assert process.poll() is None, f"make lab exited ({process.returncode}):\n{log.read_text()}"
            assert time.monotonic() < deadline, f"make lab printed no URL:\n{log.read_text()}"
            time.sleep(0.5)
            match = URL.search(log.read_text(errors="replace"))
        assert int(match.group(1)) == port
        base, token = f"http://127.0.0.1:{port}", match.group(2)
        while _serving(base, token) != 200:
            assert process.poll() is None, f"the server exited:\n{log.read_text()}"
            assert time.monotonic() < deadline, f"the server never answered:\n{log.read_text()}"
            time.sleep(0.5)
        yield Lab(match.group(0), base, token, port, log, home / "results")
    finally:
        _stop(process, base, token)


def _serving(base: str, token: str) -> int:
    try:
        return _get(f"{base}/api/status", token)[0]
    except OSError:
        return 0


@pytest.mark.slow
def test_lab_listens_on_loopback_only_and_refuses_requests_without_the_token(lab: Lab):
    import psutil

    assert len(lab.token) >= 32
    assert _get(f"{lab.base}/api/contents")[0] == 403
    assert _get(f"{lab.base}/api/contents?token=not-{lab.token}")[0] == 403
    status, location = _get(f"{lab.base}/lab")
    assert status == 302 and location.startswith("/login"), (status, location)
    assert _get(f"{lab.base}/api/contents", lab.token)[0] == 200
    assert _get(lab.url)[0] == 200  # the printed URL opens JupyterLab
    listening = {c.laddr.ip for c in psutil.net_connections("tcp")
                 if c.status == psutil.CONN_LISTEN and c.laddr.port == lab.port}
    assert listening == {"127.0.0.1"}
    # the token is on no command line, where `ps` shows it to every user of the machine
    for proc in psutil.process_iter(["cmdline"]):
        assert lab.token not in " ".join(proc.info["cmdline"] or []), proc
    with _OPENER.open(urllib.request.Request(
            f"{lab.base}/api/kernelspecs", headers={"Authorization": f"token {lab.token}"})) as r:
        specs = json.load(r)["kernelspecs"]
    assert specs[KERNELSPEC["name"]]["spec"]["display_name"] == KERNELSPEC["display_name"]


# --- the browser ----------------------------------------------------------------------------


def _unavailable(reason: str) -> None:
    """Skip locally; fail under CI=true, where the browser test must run."""
    if os.environ.get("CI") == "true":
        pytest.fail(f"{reason}: CI=true, so the browser test must run (.ci/run installs "
                    "Chromium)", pytrace=False)
    pytest.skip(reason)


@pytest.fixture(scope="module")
def chromium() -> str:
    """The system Chromium's path (``$FUSNET_CHROMIUM`` overrides), with Playwright present."""
    path = os.environ.get("FUSNET_CHROMIUM") or next(
        (found for name in BROWSERS if (found := shutil.which(name))), None)
    if path is None or not os.access(path, os.X_OK):
        _unavailable(f"no Chromium on this machine ({path or 'apt-get install chromium'})")
    try:
        import playwright.sync_api  # noqa: F401
    except ImportError:
        _unavailable("no playwright (the dev extra: make venv)")
    return str(path)


def _looks_like_an_error(text: str) -> bool:
    """An error output as JupyterLab shows it: JupyterLab renders an exception with the same
    stderr mime type as a warning, so tell them apart by IPython's traceback (a rule of
    dashes, then the exception's name) or an ERROR log line."""
    head = text.lstrip()
    return (head.startswith("-" * 20) or "Traceback (most recent call last)" in text
            or re.search(r"^\w*(Error|Exception|Interrupt)\b", head, flags=re.M) is not None
            or re.search(r"^ERROR\b", text, flags=re.M) is not None)


def _menu(page: Any, menu: str, item: str) -> None:
    """Click ``menu > item`` in JupyterLab's menu bar."""
    page.locator(".lm-MenuBar-itemLabel", has_text=re.compile(f"^{re.escape(menu)}$")).click()
    page.locator(".lm-Menu-itemLabel", has_text=re.compile(f"^{re.escape(item)}$")).click()


_PROMPTS = """(panel) => [...document.querySelectorAll(panel + ' .jp-CodeCell .jp-InputPrompt')]
    .map(e => e.textContent.trim())"""


def _run_all_cells(page: Any) -> list[str]:
    """Clear every output, Run > Run All Cells, wait until no cell is queued or running;
    return the input prompts (``[n]:`` for each cell that ran)."""
    _menu(page, "Edit", "Clear Outputs of All Cells")
    _menu(page, "Run", "Run All Cells")
    page.wait_for_function(f"(panel) => ({_PROMPTS})(panel).some(p => p.includes('*'))",
                           arg=PANEL, timeout=60_000)
    page.wait_for_function(f"(panel) => !({_PROMPTS})(panel).some(p => p.includes('*'))",
                           arg=PANEL, timeout=RUN_ALL_TIMEOUT_MS, polling=500)
    page.wait_for_selector(f'{PANEL} .jp-Notebook-ExecutionIndicator[data-status="idle"]',
                           state="attached", timeout=60_000)
    return page.evaluate(_PROMPTS, PANEL)


def _outputs(page: Any) -> list[tuple[str, str]]:
    """(mime type, text) of every output shown in the notebook."""
    return page.locator(f"{PANEL} .jp-OutputArea-output").evaluate_all(
        "els => els.map(e => [e.dataset.mimeType || '', e.textContent])")


def _last_cell_text(page: Any) -> str:
    return "".join(page.locator(f"{PANEL} .jp-CodeCell").last
                   .locator(".jp-OutputArea-output").all_text_contents())


def _papermill_last_cell_text(folder: Path) -> str:
    """Notebook 01 with its defaults, executed by papermill on the kernel its metadata names,
    writing under ``folder``: the text its last cell printed."""
    import papermill

    folder.mkdir(parents=True, exist_ok=True)
    executed = folder / f"{NOTEBOOK}.ipynb"
    papermill.execute_notebook(
        str(NOTEBOOK_DIR / f"{NOTEBOOK}.ipynb"), str(executed),
        parameters={"output_root": str(folder / "results")}, cwd=str(NOTEBOOK_DIR),
        progress_bar=False,
    )
    cells = [c for c in json.loads(executed.read_text())["cells"] if c["cell_type"] == "code"]
    return "".join("".join(o.get("text", "")) for o in cells[-1]["outputs"])


def _finished_runs(results: Path) -> dict[str, int]:
    """Each finished training run's ``metrics.json``, with its modification time."""
    return {str(p.relative_to(results)): p.stat().st_mtime_ns
            for p in sorted((results / "runs").rglob("metrics.json"))}


_COUNT_PROGRESS_WIDGETS = """() => {
    window.fusnetProgressWidgets = 0;
    new MutationObserver(records => { for (const r of records) for (const n of r.addedNodes)
        if (n.nodeType === 1 && (n.matches('.widget-hprogress') || n.querySelector('.widget-hprogress')))
            window.fusnetProgressWidgets++; }).observe(document.body, {childList: true, subtree: true});
}"""


@pytest.mark.slow
@pytest.mark.notebook
@pytest.mark.timeout(1800)
def test_notebook_01_runs_top_to_bottom_in_jupyterlab(chromium: str, lab: Lab, tmp_path: Path,
                                                      monkeypatch: pytest.MonkeyPatch):
    from playwright.sync_api import sync_playwright

    monkeypatch.delenv("FUSNET_CACHE_DIR", raising=False)  # the lab's kernels do without
    source = NOTEBOOK_DIR / f"{NOTEBOOK}.ipynb"
    committed = hashlib.sha256(source.read_bytes()).hexdigest()
    had_checkpoints = (NOTEBOOK_DIR / ".ipynb_checkpoints").exists()  # a person's own lab
    started = time.perf_counter()
    expected = _papermill_last_cell_text(tmp_path / "papermill")
    assert "map_tie_aware" in expected, expected
    papermill_seconds = time.perf_counter() - started
    screenshot = tmp_path / f"jupyterlab-{NOTEBOOK}.png"

    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=chromium, headless=True)
        page = browser.new_page(viewport={"width": 1400, "height": 1000})
        page.set_default_timeout(60_000)
        try:
            # the printed URL shows the notebooks; open 01 from the file browser
            page.goto(lab.url)
            item = page.locator(".jp-DirListing-itemText",
                                has_text=re.compile(rf"^{NOTEBOOK}\.ipynb$"))
            item.wait_for()
            listed = set(page.locator(".jp-DirListing-itemText").all_text_contents())
            assert {p.name for p in NOTEBOOK_DIR.glob("*.ipynb")} <= listed, listed
            item.dblclick()
            try:
                page.wait_for_function(
                    "([panel, name]) => document.querySelector(panel + ' .jp-Toolbar-kernelName')"
                    "?.textContent.trim() === name", arg=[PANEL, KERNELSPEC["display_name"]],
                    timeout=120_000)
            except Exception as error:
                raise AssertionError(f"notebook {NOTEBOOK} did not start its kernel "
                                     f"{KERNELSPEC['display_name']!r} (make venv registers it)"
                                     f"\n{lab.log_tail()}") from error

            # first run: trains its four smoke runs
            page.evaluate(_COUNT_PROGRESS_WIDGETS)
            prompts = _run_all_cells(page)
            browser_seconds = time.perf_counter() - started - papermill_seconds
            assert prompts and all(re.fullmatch(r"\[\d+\]:", p) for p in prompts), (
                f"Run All stopped (a cell failed?): {prompts}")
            errors = [text for mime, text in _outputs(page)
                      if "error" in mime or ("stderr" in mime and _looks_like_an_error(text))]
            assert not errors, errors[0]
            assert page.evaluate("() => window.fusnetProgressWidgets") > 0, \
                "no progress bar rendered as a widget (tqdm.auto with ipywidgets)"
            printed = _last_cell_text(page)
            assert printed.strip() == expected.strip()
            page.locator(f"{PANEL} .jp-CodeCell").last.scroll_into_view_if_needed()
            page.screenshot(path=str(screenshot))
            runs = _finished_runs(lab.results)
            assert len(runs) == 4, runs  # one per code length, under the lab's output root
            assert (lab.results / NOTEBOOK / "smoke" / "metrics.json").is_file()

            # second run: reads the finished runs back (none retrained), same numbers
            prompts = _run_all_cells(page)
            assert all(re.fullmatch(r"\[\d+\]:", p) for p in prompts), prompts
            assert _last_cell_text(page).strip() == expected.strip()
            assert _finished_runs(lab.results) == runs
            assert "(finished before)" in " ".join(text for _, text in _outputs(page))
        except BaseException:
            page.screenshot(path=str(tmp_path / "failure.png"))
            raise
        finally:
            browser.close()

    assert screenshot.stat().st_size > 10_000
    assert hashlib.sha256(source.read_bytes()).hexdigest() == committed, (
        f"{source.name} was saved over by the server")
    assert not (NOTEBOOK_DIR / ".ipynb_checkpoints").exists() or had_checkpoints
    logger.info("papermill %.0f s, JupyterLab run %.0f s; screenshot %s",
                papermill_seconds, browser_seconds, screenshot)
