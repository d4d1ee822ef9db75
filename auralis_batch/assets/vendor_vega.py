"""Re-vendor the plotting scripts of the HTML report (run by hand, not installed).

    cd "$(mktemp -d)" && npm init -y >/dev/null &&
    npm install --omit=dev vega@5.33.1 vega-lite@5.23.0 vega-embed@6.29.0 &&
    python /path/to/auralis_batch/assets/vendor_vega.py node_modules /path/to/vega-LICENSE

copies ``build/NAME.min.js`` of each package here (its ``sourceMappingURL`` comment
removed: the map is not shipped) and writes ``NAME.LICENSE``: the licence text of every
package the browser build bundles, each text once with the packages it covers. The npm
package ``vega`` ships no licence file; pass the ``LICENSE`` of github.com/vega/vega,
which covers it and the other ``vega-*`` packages that ship none.
"""

from __future__ import annotations

import json
import re
import sys
from pathlib import Path

HERE = Path(__file__).parent
TOPS = ("vega", "vega-lite", "vega-embed")
# Not in the browser builds: command-line tools, Node's fetch, type declarations.
EXCLUDE = {"yargs", "node-fetch", "commander", "iconv-lite", "rw", "@types/estree"}
EXCLUDE |= {"@types/geojson", "vega-typings"}
# Loaded as separate scripts (UMD globals), not bundled.
PEERS = {"vega-lite": {"vega"}, "vega-embed": {"vega", "vega-lite"}}


def _resolve(nm: Path, name: str, parent: Path | None) -> Path:
    """Node's lookup: the nearest ``node_modules/name`` from ``parent`` upwards."""
    cur = parent
    while cur is not None and cur != nm.parent:
        candidate = cur / "node_modules" / name if cur.name != "node_modules" else cur / name
        if candidate.exists():
            return candidate
        cur = cur.parent
    return nm / name


def _closure(nm: Path, top: str) -> dict[tuple[str, str], Path]:
    seen: dict[tuple[str, str], Path] = {}
    stack: list[tuple[str, Path | None]] = [(top, None)]
    while stack:
        name, parent = stack.pop()
        folder = _resolve(nm, name, parent)
        meta = json.loads((folder / "package.json").read_text())
        key = (meta["name"], meta["version"])
        if key in seen:
            continue
        seen[key] = folder
        for dep in meta.get("dependencies") or {}:
            if dep not in EXCLUDE and dep not in PEERS.get(top, ()):
                stack.append((dep, folder))
    return seen


def _licence_text(folder: Path) -> str | None:
    for f in sorted(folder.iterdir()):
        if f.name.lower().startswith(("license", "licence")):
            return f.read_text(encoding="utf-8").strip()
    return None


def main(nm: Path, vega_repo_licence: Path) -> None:
    repo_text = vega_repo_licence.read_text(encoding="utf-8").strip()
    for top in TOPS:
        build = nm / top / "build" / f"{top}.min.js"
        src = re.sub(r"\n?//# sourceMappingURL=\S+\s*$", "\n", build.read_text(encoding="utf-8"))
        if re.search(r"</script|<!--", src, re.IGNORECASE):
            raise SystemExit(f"{build}: contains </script or <!--; it cannot be inlined as is")
        (HERE / f"{top}.min.js").write_text(src, encoding="utf-8")
        packages = _closure(nm, top)
        version = next(v for n, v in packages if n == top)
        texts: dict[str, list[str]] = {}
        for (name, ver), folder in sorted(packages.items()):
            meta = json.loads((folder / "package.json").read_text())
            text = _licence_text(folder)
            if text is None:
                if not name.startswith("vega"):
                    raise SystemExit(f"{name} {ver}: no licence file")
                text = (
                    "(these npm packages ship no licence file; the LICENSE of their repository, "
                    f"github.com/vega/vega, covers them)\n\n{repo_text}"
                )
            texts.setdefault(text, []).append(f"{name} {ver} ({meta.get('license')})")
        lines = [
            f"{top}.min.js is build/{top}.min.js of the npm package {top}@{version}",
            "(its trailing sourceMappingURL comment removed). The build bundles the",
            "packages listed below; each licence text follows once, with the packages it covers.",
            "",
        ]
        for text, names in texts.items():
            lines += ["=" * 78, *names, "-" * 78, text, ""]
        (HERE / f"{top}.LICENSE").write_text("\n".join(lines), encoding="utf-8")
        print(f"{top} {version}: {len(src)} bytes, {len(packages)} packages")


if __name__ == "__main__":
    main(Path(sys.argv[1]), Path(sys.argv[2]))
