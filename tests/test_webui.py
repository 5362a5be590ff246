"""The browser demo (tools/webui.py): its checks of uploads and prompts, and
the page driven end to end in headless Chromium."""
import os
import re
import shutil
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from conftest import REPO
from test_demo import tiny_checkpoint  # noqa: F401 (a fixture)

import gradio as gr
from lumen_mm.apis import webui

CHROMIUM = shutil.which('chromium')
CHROMEDRIVER = shutil.which('chromedriver')
# the tiny server: photos above 10,000 pixels are refused
MAX_MEGAPIXELS = 0.01


def _photo(path: Path, size=(100, 80), seed: int = 0) -> str:
    rng = np.random.default_rng(seed)
    w, h = size
    Image.fromarray(rng.integers(0, 255, (h, w, 3), np.uint8)).save(path)
    return str(path)


# -- the checks behind the page -------------------------------------------

def test_every_task_of_the_inferencer_has_a_choice():
    from lumen_mm.apis import TASK_PROMPTS
    assert webui.TASK_NAMES == {webui.INSTRUCTION, *TASK_PROMPTS}


@pytest.mark.parametrize('content, message', [
    (None, 'Upload a photo first'),
    (b'', 'is empty (0 bytes)'),
    (b'hello, not a picture', 'is not an image'),
])
def test_bad_uploads_are_named(tmp_path, content, message):
    path = None
    if content is not None:
        path = tmp_path / 'upload.png'
        path.write_bytes(content)
    with pytest.raises(gr.Error, match=re.escape(message)):
        webui.read_photo(path and str(path), max_pixels=10_000)


def test_photo_too_large_or_truncated(tmp_path):
    big = _photo(tmp_path / 'big.png', size=(200, 100))
    with pytest.raises(gr.Error, match='200 x 100 = 20,000 pixels, the '
                       'limit is 10,000'):
        webui.read_photo(big, max_pixels=10_000)
    assert webui.read_photo(big, max_pixels=20_000).size == (200, 100)
    data = Path(_photo(tmp_path / 'whole.jpg', size=(64, 64))).read_bytes()
    cut = tmp_path / 'cut.jpg'
    cut.write_bytes(data[:len(data) // 2])
    with pytest.raises(gr.Error, match='damaged or truncated'):
        webui.read_photo(str(cut), max_pixels=10_000)


def test_photo_is_upright_rgb(tmp_path):
    exif = Image.Exif()
    exif[0x0112] = 6  # stored sideways: shown rotated 90 degrees clockwise
    path = tmp_path / 'exif.jpg'
    Image.new('L', (30, 50)).save(path, exif=exif.tobytes())
    image = webui.read_photo(str(path), max_pixels=10_000)
    assert image.mode == 'RGB' and image.size == (50, 30)


def test_names_and_person_boxes_are_parsed():
    assert webui.parse_names(' star, cross ') == ['star', 'cross']
    assert webui.parse_names('  ') is None
    with pytest.raises(gr.Error, match='Empty name'):
        webui.parse_names('star,,cross')
    assert webui.parse_person_boxes('1 2 3 4; 5,6,7,8') == [[1, 2, 3, 4],
                                                            [5, 6, 7, 8]]
    assert webui.parse_person_boxes('') is None
    with pytest.raises(gr.Error, match='5 numbers, but four per person'):
        webui.parse_person_boxes('1 2 3 4 5')
    with pytest.raises(gr.Error, match='numbers only'):
        webui.parse_person_boxes('1 2 three 4')


@pytest.fixture(scope='module')
def inferencer(tiny_checkpoint):  # noqa: F811 (the imported fixture)
    from lumen_mm.apis import LumenInferencer
    config, checkpoint = tiny_checkpoint
    return LumenInferencer(config, checkpoint, show_progress=False)


def test_answer_draws_and_reports_progress(inferencer, tmp_path):
    photo = _photo(tmp_path / 'photo.png', size=(120, 90))
    steps = []

    class Recorder(gr.Progress):
        """The page's gr.Progress, recording what it is told."""

        def __call__(self, value, desc=None, **kwargs):
            steps.append((value, desc))

    drawn, heatmaps, text = webui.answer(
        inferencer, photo, 'det', 'circle, star', score_thr=0.0,
        progress=Recorder())
    assert drawn.shape == (90, 120, 3)
    assert heatmaps.shape == (90, 240, 3)  # one panel per name
    assert text.startswith('task: det') and 'circle:' in text
    values = [value for value, _ in steps]
    assert values == sorted(values) and len(values) >= 3


def test_answer_turns_bad_prompts_into_page_errors(inferencer, tmp_path):
    photo = _photo(tmp_path / 'photo.png')
    with pytest.raises(gr.Error, match='needs `text`'):
        webui.answer(inferencer, photo, 'ground', '  ')
    with pytest.raises(gr.Error, match='instruction is empty'):
        webui.answer(inferencer, photo, webui.INSTRUCTION, '')
    with pytest.raises(gr.Error, match='Unknown task'):
        webui.answer(inferencer, photo, 'caption', 'a dog')
    drawn, heatmaps, text = webui.answer(
        inferencer, photo, 'pose', '', person_boxes='10 10 60 70')
    assert drawn.shape == (80, 100, 3) and heatmaps is None
    assert text.count('keypoints:') == 1


def test_building_the_page_writes_nothing_beside_the_code(inferencer):
    """gradio writes a ``.pyi`` stub beside every component subclass's
    module; the page subclasses none."""
    app = webui.build_app(inferencer)
    assert isinstance(app, gr.Blocks)
    assert not (REPO / 'lumen_mm/apis/webui.pyi').exists()


def test_cli_names_bad_arguments(tmp_path, capsys):
    config = str(REPO / 'configs/lumen/shapes/lumen_tiny_shapes_det_ground.py')
    for args, message in [
        (['--checkpoint', str(tmp_path / 'missing.pth')],
         'checkpoint not found'),
        (['--max-megapixels', '0'], 'must be > 0'),
    ]:
        with pytest.raises(SystemExit):
            webui.main(['--config', config, *args])
        assert message in capsys.readouterr().err


# -- the page in a real browser --------------------------------------------

def _free_port() -> int:
    with socket.socket() as s:
        s.bind(('127.0.0.1', 0))
        return s.getsockname()[1]


def _wait_for_page(proc: subprocess.Popen, url: str, log: Path,
                   timeout: float = 120) -> None:
    """Ask for ``url`` until it answers; fail with the server's output if
    it exits first or nothing answers within ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            with urllib.request.urlopen(url, timeout=1):
                return
        except OSError:
            assert time.monotonic() < deadline, f'no page after {timeout} s'
        try:  # between two asks, watch the server for a crash
            proc.wait(timeout=0.25)
        except subprocess.TimeoutExpired:
            continue
        pytest.fail(f'tools/webui.py exited {proc.returncode}:\n'
                    + log.read_text()[-3000:])


@pytest.fixture(scope='module')
def server(tiny_checkpoint, tmp_path_factory):  # noqa: F811
    """tools/webui.py on a free port of 127.0.0.1, stopped afterwards."""
    if CHROMIUM is None or CHROMEDRIVER is None:
        pytest.skip('Debian\'s chromium and chromium-driver are not '
                    'installed (scripts/setup_env.sh installs them)')
    config, checkpoint = tiny_checkpoint
    work = tmp_path_factory.mktemp('webui')
    port = _free_port()
    log = open(work / 'server.log', 'w')
    proc = subprocess.Popen(
        [sys.executable, str(REPO / 'tools/webui.py'), '--config', config,
         '--checkpoint', checkpoint, '--port', str(port),
         '--max-megapixels', str(MAX_MEGAPIXELS)],
        cwd=REPO, stdout=log, stderr=subprocess.STDOUT,
        env=dict(os.environ, GRADIO_TEMP_DIR=str(work / 'gradio')))
    url = f'http://127.0.0.1:{port}/'
    try:
        _wait_for_page(proc, url, work / 'server.log')
        yield url
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            proc.kill()
        log.close()


@pytest.fixture(scope='module')
def browser(server):
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service
    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for arg in ('--headless=new', '--no-sandbox', '--disable-dev-shm-usage',
                '--window-size=1280,1200'):
        options.add_argument(arg)
    driver = webdriver.Chrome(service=Service(CHROMEDRIVER), options=options)
    yield driver
    driver.quit()


def _wait(driver, condition, timeout: float = 60):
    from selenium.webdriver.support.ui import WebDriverWait
    return WebDriverWait(driver, timeout, poll_frequency=0.2).until(condition)


def _upload(driver, url: str, path: str) -> None:
    from selenium.webdriver.common.by import By
    driver.get(url)
    _wait(driver, lambda d: d.find_element(
        By.CSS_SELECTOR, '#photo input[type=file]')).send_keys(path)


def _error_text(driver) -> str:
    """The text of the page's error messages, once one shows."""
    from selenium.webdriver.common.by import By
    return _wait(driver, lambda d: ' '.join(
        t.text for t in d.find_elements(By.CSS_SELECTOR, '.toast-body')))


def test_page_answers_a_photo(server, browser, tmp_path):
    from selenium.webdriver.common.by import By
    _upload(browser, server, _photo(tmp_path / 'shapes.png'))
    browser.find_element(By.CSS_SELECTOR, '#task input[value=det]').click()
    browser.find_element(By.CSS_SELECTOR, '#prompt textarea').send_keys(
        'circle, star')
    browser.find_element(By.ID, 'run').click()
    text = _wait(browser, lambda d: d.find_element(
        By.CSS_SELECTOR, '#answer textarea').get_attribute('value'))
    assert text.startswith('task: det')
    assert 'instances with score >' in text
    # the drawn answer and the heatmaps arrived and decoded in the browser
    for box in ('result', 'heatmaps'):
        width = _wait(browser, lambda d: d.execute_script(
            f'const i = document.querySelector("#{box} img");'
            'return i && i.complete && i.naturalWidth;'))
        assert width == (100 if box == 'result' else 200)


def test_page_names_bad_uploads(server, browser, tmp_path):
    fake = tmp_path / 'notes.png'
    fake.write_text('not a picture')
    _upload(browser, server, str(fake))
    assert "'notes.png' is not an image" in _error_text(browser)
    big = _photo(tmp_path / 'big.png', size=(200, 100))
    _upload(browser, server, big)
    assert 'the limit is 10,000' in _error_text(browser)

