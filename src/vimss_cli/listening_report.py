"""A listening report: one self-contained HTML page to hear and compare the stems.

The page holds every track (the mixture first, then the stems) as Ogg Vorbis in a data URI,
with its waveform as an inline SVG envelope, and a synchronised player: one play/pause and
one seek bar drive all tracks, each of which can be muted or soloed. A picture (the video
frame with the players' boxes) and a table of scores can be added. Nothing is fetched: the
file can be mailed or archived as it is.

The page also answers a self-test (``report.html#selftest``): it loads and briefly plays every
track, then writes ``selftest: N/N played`` into the element ``#selftest``, which a headless
browser can read back.
"""

from __future__ import annotations

import base64
import html
import io
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import soundfile

from vimss_cli.atomic import atomic_path
from vimss_cli.errors import InputError, NonFiniteAudioError, OutputError
from vimss_cli.stem_writer import check_output_folder

#: In every page's head: what tells a page of ours from a user's own ``report.html``.
GENERATOR = "<meta name='generator' content='vimss listening report'>"

#: Points of each waveform envelope (the page's width in SVG units).
ENVELOPE_POINTS = 600
#: The embedded tracks' highest rate: a listening copy needs no more, and libsndfile's Vorbis
#: encoder crashes the process at 210 kHz and above.
MAX_LISTENING_RATE = 48000
#: samples per write to the Ogg Vorbis encoder (see :func:`_ogg_data_uri`)
OGG_BLOCK = 65536


@dataclass(frozen=True)
class Track:
    """One row of the player: a name and its audio ``(N,)`` float32 at ``rate``."""

    name: str
    audio: np.ndarray
    rate: int


def read_track(path: Path, name: str | None = None) -> Track:
    """A WAV/FLAC/Ogg file as a mono :class:`Track` (channels averaged). A file holding NaN
    or infinite samples is refused: one such sample made every track of the page silent
    (the gain shared by all tracks became NaN)."""
    try:
        audio, rate = soundfile.read(str(path), dtype="float32", always_2d=True)
    except (OSError, soundfile.SoundFileError) as error:
        raise InputError(f"cannot read {path}: {error}") from None
    if not np.isfinite(audio).all():
        raise NonFiniteAudioError(f"{path} holds NaN or infinite samples: it cannot be played")
    return Track(name or Path(path).stem, audio.mean(axis=1), int(rate))


def _ogg_data_uri(track: Track, gain: float = 1.0) -> str:
    """``track`` times ``gain`` (one gain for all of a page's tracks, so that their levels
    compare and the loudest stays within Vorbis's [-1, 1]) as an Ogg Vorbis data URI, at
    most :data:`MAX_LISTENING_RATE` Hz."""
    buffer = io.BytesIO()
    audio, rate = track.audio * np.float32(gain), track.rate
    if rate > MAX_LISTENING_RATE:
        import soxr

        audio, rate = soxr.resample(audio, rate, MAX_LISTENING_RATE), MAX_LISTENING_RATE
    audio = np.clip(audio, -1.0, 1.0)  # the resampler may overshoot a full-scale peak
    # in blocks: libsndfile's Vorbis encoder, given minutes of audio in one write, overflows
    # the stack and kills the process (python-soundfile issues 396 and 426)
    with soundfile.SoundFile(buffer, "w", rate, 1, format="OGG", subtype="VORBIS") as encoder:
        for start in range(0, audio.size, OGG_BLOCK):
            encoder.write(audio[start : start + OGG_BLOCK])
    return "data:audio/ogg;base64," + base64.b64encode(buffer.getvalue()).decode("ascii")


def envelope_svg(
    audio: np.ndarray, points: int = ENVELOPE_POINTS, height: int = 60, peak: float | None = None
) -> str:
    """An SVG polygon of the waveform's min/max envelope over ``points`` columns, full height
    at ``peak`` (default: the waveform's own peak)."""
    if audio.size == 0:
        return f'<svg viewBox="0 0 {points} {height}"></svg>'
    edges = np.linspace(0, audio.size, points + 1).astype(int)
    highs = np.array([audio[a:b].max() if b > a else 0.0 for a, b in pairwise(edges)])
    lows = np.array([audio[a:b].min() if b > a else 0.0 for a, b in pairwise(edges)])
    scale = max(float(np.abs(audio).max()) if peak is None else peak, 1e-9)
    middle = height / 2
    top = [f"{x},{middle - middle * h / scale:.1f}" for x, h in enumerate(highs)]
    bottom = [
        f"{x},{middle - middle * lo / scale:.1f}" for x, lo in reversed(list(enumerate(lows)))
    ]
    return (
        f'<svg viewBox="0 0 {points} {height}" preserveAspectRatio="none">'
        f'<polygon points="{" ".join(top + bottom)}"/></svg>'
    )


def pairwise(values: np.ndarray) -> list[tuple[int, int]]:
    return list(zip(values[:-1].tolist(), values[1:].tolist(), strict=True))


_STYLE = """
body{font-family:system-ui,sans-serif;margin:2em;max-width:60em;color:#222}
.track{display:grid;grid-template-columns:12em 5em 5em 1fr;align-items:center;gap:.5em;
margin:.3em 0}
.track svg{width:100%;height:48px;fill:#3a6ea5;background:#f2f4f7}
.track.mixture svg{fill:#666}
button{padding:.3em .8em}button.on{background:#3a6ea5;color:white}
#transport{display:flex;gap:1em;align-items:center;margin:1em 0}
#seek{flex:1}table{border-collapse:collapse}td,th{padding:.2em .8em;border-bottom:1px solid #ddd}
img{max-width:100%}
"""

_SCRIPT = """
const audios=[...document.querySelectorAll('audio')];
const play=document.getElementById('play'),seek=document.getElementById('seek'),
time=document.getElementById('time');
const length=Math.max(...audios.map(a=>parseFloat(a.dataset.seconds)));
seek.max=length;
function sync(t){audios.forEach(a=>{a.currentTime=Math.min(t,a.duration||t)})}
play.onclick=()=>{if(audios[0].paused){sync(audios[0].currentTime);
audios.forEach(a=>a.play());play.textContent='pause'}else{audios.forEach(a=>a.pause());
play.textContent='play'}};
seek.oninput=()=>sync(parseFloat(seek.value));
audios[0].ontimeupdate=()=>{seek.value=audios[0].currentTime;
time.textContent=audios[0].currentTime.toFixed(1)+' / '+length.toFixed(1)+' s'};
const solos=new Set();
function apply(){audios.forEach((a,i)=>{const m=document.getElementById('mute'+i);
a.muted=m.classList.contains('on')||(solos.size>0&&!solos.has(i))})}
audios.forEach((a,i)=>{document.getElementById('mute'+i).onclick=e=>{
e.target.classList.toggle('on');apply()};
document.getElementById('solo'+i).onclick=e=>{e.target.classList.toggle('on');
solos.has(i)?solos.delete(i):solos.add(i);apply()}});
if(location.hash==='#selftest'){Promise.all(audios.map(a=>{a.muted=true;
return a.play().then(()=>new Promise(r=>setTimeout(()=>{r(a.currentTime>0||!a.paused)},300)))
.catch(()=>false)})).then(ok=>{document.getElementById('selftest').textContent=
'selftest: '+ok.filter(Boolean).length+'/'+audios.length+' played'})}
"""


def render(
    title: str,
    tracks: list[Track],
    picture_png: bytes | None = None,
    scores: list[dict[str, str]] | None = None,
) -> str:
    """The report page as one HTML string (``tracks[0]`` is drawn as the mixture when named
    ``mixture``). The waveforms share one scale and the audio one gain (louder than full
    scale, all tracks are scaled down together), so their levels compare."""
    if not tracks:
        raise InputError("a listening report needs at least one track")
    rows = []
    peak = max(float(np.abs(t.audio).max()) if t.audio.size else 0.0 for t in tracks)
    for index, track in enumerate(tracks):
        seconds = track.audio.size / track.rate
        kind = "track mixture" if track.name == "mixture" else "track"
        rows.append(
            f'<div class="{kind}"><span>{html.escape(track.name)}</span>'
            f'<button id="mute{index}">mute</button><button id="solo{index}">solo</button>'
            f"{envelope_svg(track.audio, peak=peak)}"
            f'<audio preload="auto" data-seconds="{seconds:.3f}" '
            f'src="{_ogg_data_uri(track, 1.0 / max(peak, 1.0))}"></audio></div>'
        )
    parts = [
        f"<!doctype html><html><head><meta charset='utf-8'>{GENERATOR}",
        f"<title>{html.escape(title)}</title><style>{_STYLE}</style></head><body>",
        f"<h1>{html.escape(title)}</h1>",
    ]
    if picture_png is not None:
        encoded = base64.b64encode(picture_png).decode("ascii")
        parts.append(f'<img alt="the players found" src="data:image/png;base64,{encoded}">')
    parts += [
        '<div id="transport"><button id="play">play</button>',
        '<input id="seek" type="range" min="0" step="0.01" value="0"><span id="time"></span>',
        "</div>",
        *rows,
    ]
    if scores:
        columns = list(scores[0])
        head = "".join(f"<th>{html.escape(c)}</th>" for c in columns)
        body = "".join(
            "<tr>"
            + "".join(f"<td>{html.escape(str(row.get(c, '')))}</td>" for c in columns)
            + "</tr>"
            for row in scores
        )
        parts.append(f"<h2>Scores</h2><table><tr>{head}</tr>{body}</table>")
    parts += ['<p id="selftest"></p>', f"<script>{_SCRIPT}</script></body></html>"]
    return "".join(parts)


def is_listening_report(path: Path) -> bool:
    """Whether the file at ``path`` is a page :func:`write_report` wrote (its head says so)."""
    try:
        with open(path, "rb") as page:
            return GENERATOR.encode() in page.read(512)
    except OSError:
        return False


def write_report(
    path: Path,
    title: str,
    tracks: list[Track],
    picture_png: bytes | None = None,
    scores: list[dict[str, str]] | None = None,
    force: bool = False,
) -> Path:
    """Write the page to ``path`` whole or not at all; an existing file needs ``force``."""
    path = Path(path)
    if path.suffix.lower() not in (".html", ".htm"):
        raise InputError(f"the report must be an .html file, got {path}")
    if path.exists() and not force:
        raise OutputError(f"{path} already exists (use --force to replace it)")
    check_output_folder(path.parent)  # a folder that can be made is made, as inspect does
    page = render(title, tracks, picture_png, scores)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        with atomic_path(path) as temporary:
            temporary.write_text(page, encoding="utf-8")
    except OSError as error:  # writing, or renaming into place
        raise OutputError(f"cannot write {path}: {error.strerror}") from None
    return path
