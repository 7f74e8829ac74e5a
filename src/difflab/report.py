"""Static HTML pages for runs: open straight from disk, no server, no script."""

from __future__ import annotations

import html
import os

from . import metadata


def _e(text) -> str:
    return html.escape(str(text), quote=True)


STYLE = """
body{font-family:system-ui,sans-serif;margin:1.5rem;color:#222;max-width:1600px}
h1{font-size:1.4rem}h2{font-size:1.1rem;margin-top:2rem}
img.grid{max-width:100%;border:1px solid #ccc}
table{border-collapse:collapse}td,th{border:1px solid #ddd;padding:4px;vertical-align:top;font-size:.8rem}
th{background:#f4f4f4}td img{width:160px;display:block}
pre{white-space:pre-wrap;max-width:22rem;font-size:.72rem;margin:.3rem 0}
.failed{color:#a00}code{background:#f4f4f4;padding:0 .2rem}
"""


def sweep_page(run) -> str:
    """The page of a sweep run: its grids, then every image (click for full size) with its parameters."""
    cfg = run.config
    out = [f"<!doctype html><meta charset='utf-8'><title>{_e(cfg['name'])}</title><style>{STYLE}</style>",
           f"<h1>Sweep <code>{_e(cfg['name'])}</code></h1>",
           f"<p>{_e(cfg['task'])} with <code>{_e(cfg['model'])}</code>; {_e(run.fixed_parameters())}</p>"]
    axes = [f"{a}: {cfg[a]['param']} = {cfg[a]['values']}" for a in ("x", "y", "z") if cfg.get(a)]
    if axes:
        out.append("<p>" + "<br>".join(_e(a) for a in axes) + "</p>")
    failed = run.failed
    if failed:
        out.append(f"<p class='failed'>{len(failed)} failed: " +
                   ", ".join(_e(f"{r['cell']} seed {r['seed']}: {r['error']}") for r in failed) + "</p>")
    out.append("<p>Files: <a href='sweep.yaml'>sweep.yaml</a> (the resolved config) · "
               "<a href='manifest.jsonl'>manifest.jsonl</a></p>")
    for z, path in enumerate(run.grid_paths()):
        out.append(f"<h2>{_e(path.name)}</h2><a href='{_e(path.name)}'><img class='grid' src='{_e(path.name)}'></a>")
    out.append("<h2>Images</h2><table><tr><th>cell</th><th>image</th><th>parameters</th></tr>")
    for row in run.table():
        labels = ", ".join(str(row[a]) for a in ("x", "y", "z") if a in row)
        if row["status"] == "ok":
            path = run.dir / row["file"]
            text = metadata.read(path)["parameters"] or ""
            rel = os.path.relpath(path, run.dir)
            image = f"<a href='{_e(rel)}'><img loading='lazy' src='{_e(rel)}' alt='{_e(labels)}'></a>"
            params = f"<pre>{_e(text)}</pre>"
        else:
            image, params = f"<span class='failed'>{_e(row['status'])}</span>", f"<pre>{_e(row['error'] or '')}</pre>"
        out.append(f"<tr><td>{_e(row['cell'])}<br>{_e(labels)}<br>seed {row['seed']}</td><td>{image}</td>"
                   f"<td>{params}</td></tr>")
    out.append("</table>")
    return "\n".join(out) + "\n"


def _media(path: str, base: str) -> str:
    rel = _e(os.path.relpath(path, base))
    if path.lower().endswith((".png", ".gif", ".jpg", ".jpeg")):
        return f"<a href='{rel}'><img class='grid' loading='lazy' src='{rel}'></a>"
    if os.path.isfile(os.path.join(path, "index.html")):
        return f"<a href='{rel}/index.html'>{rel}/index.html</a>"
    if os.path.isdir(path):  # a run folder without a page (a training run): the folder itself
        return f"<a href='{rel}/'>{rel}/</a>"
    return f"<a href='{rel}'>{rel}</a>"


def tour_page(title: str, intro: str, notebooks: list[dict], sweeps: list[dict], base: str) -> str:
    """The lab tour: each notebook (status, time, executed copy, what it made, its numbers), then each sweep.

    notebooks: Result dicts from difflab.notebooks plus 'title'; sweeps: {name, about, folder, grids, error}.
    """
    out = [f"<!doctype html><meta charset='utf-8'><title>{_e(title)}</title><style>{STYLE}</style>",
           f"<h1>{_e(title)}</h1><p>{_e(intro)}</p><h2>Notebooks</h2><ul>"]
    out += [f"<li><a href='#{_e(n['name'])}'>{_e(n['title'])}</a>: {_e(n['status'])}, {n['seconds']:.0f} s</li>"
            for n in notebooks]
    out.append("</ul>")
    for n in notebooks:
        out.append(f"<h2 id='{_e(n['name'])}'>{_e(n['title'])}</h2><p>{_e(n['status'])} in {n['seconds']:.0f} s "
                   f"· executed notebook: {_media(n['notebook'], base)}</p>")
        if n["error"]:
            out.append(f"<p class='failed'>{_e(n['error'])}</p>")
        if n["numbers"]:
            out.append("<p>" + " · ".join(f"{_e(k)} = <code>{_e(v)}</code>" for k, v in n["numbers"].items()) + "</p>")
        for a in n["artifacts"]:
            out.append(f"<h3>{_e(a['caption'])}</h3>{_media(a['path'], base)}")
    out.append("<h2>Shipped sweeps</h2>")
    for s in sweeps:
        out.append(f"<h3>{_e(s['name'])}</h3><p>{_e(s['about'])}</p>")
        if s["error"]:
            out.append(f"<p class='failed'>{_e(s['error'])}</p>")
        if s["folder"]:
            out.append(f"<p>{_media(s['folder'], base)}</p>")
        out += [_media(g, base) for g in s["grids"]]
    return "\n".join(out) + "\n"
