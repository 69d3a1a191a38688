"""Render docs/exercise_before.png and docs/exercise_after.png: an exercise region (the bundled
model's h.0.ln_1.var, with --blocks 1) as `sheetgpt build --exercise` writes it, and after a learner
typed VAR.P formulas into it in LibreOffice.

    python scripts/render_exercise_docs.py [--out docs]

The formulas are typed through sheetgpt.engine.libreoffice (its Excel-syntax formula parser) and the
book saved by LibreOffice; the pictures are made as scripts/render_docs.py makes its own.
"""

import json
import os
import subprocess
import sys
import tempfile

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
STAGE = "h.0.ln_1.var"


def main(argv):
    import argparse
    from pathlib import Path

    from sheetgpt import a1
    from sheetgpt.book.writer import build_workbook
    from sheetgpt.checkpoint import load_model
    from sheetgpt.cli_book import DEFAULT_PROMPT
    from sheetgpt.engine import libreoffice as lo
    from sheetgpt.tokenizer import Tokenizer

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", default=os.path.join(ROOT, "docs"))
    ap.add_argument("--dpi", type=int, default=80)
    args = ap.parse_args(argv)
    workdir = tempfile.mkdtemp(prefix="sheetgpt_exdocs_")
    model_dir = Path(ROOT) / "sheetgpt" / "data" / "tiny"
    model = load_model(model_dir).truncated(1)
    before = os.path.join(workdir, "before.xlsx")
    after = os.path.join(workdir, "after.xlsx")
    built = build_workbook(
        model, Tokenizer.from_dir(model_dir), DEFAULT_PROMPT, before, source=str(model_dir), exercise=STAGE
    )
    region, x = built.layout.region(STAGE), built.layout.region("embed.h")
    tab = region.tab
    edits = {
        (tab, a1.cell(region.top + i, region.left)): {"formula": f"=VAR.P({x.row(i, tab)})"} for i in range(region.rows)
    }
    lo.recalculate(before, edits=edits, save_as=after, sheets=["Guide"])
    shown = a1.cell(region.title_row - 1, 0) + ":" + a1.cell(region.bottom + 1, 15)
    jobs = []
    for name, book in (("exercise_before", before), ("exercise_after", after)):
        jobs.append(
            {
                "book": book,
                "sheet": tab,
                "range": shown,
                "pdf": os.path.join(workdir, name + ".pdf"),
                "png": os.path.join(args.out, name + ".png"),
            }
        )
    for job in jobs:  # one soffice run per book (render_docs' UNO side renders one book)
        profile = os.path.join(workdir, "profile-" + os.path.basename(job["pdf"]))
        req = {"soffice": lo.find_soffice(), "profile": profile}
        req |= {"book": job["book"], "jobs": [job]}
        req_path = os.path.join(workdir, "request.json")
        with open(req_path, "w", encoding="utf-8") as f:
            json.dump(req, f)
        subprocess.run(
            [lo.SYSTEM_PYTHON, os.path.join(HERE, "render_docs.py"), "--uno", req_path],
            check=True,
            timeout=600,
            start_new_session=True,
        )
        stem = job["png"][: -len(".png")]
        subprocess.run(
            ["pdftoppm", "-png", "-r", str(args.dpi), "-singlefile", "-f", "1", "-l", "1", job["pdf"], stem], check=True
        )
        print(f"{job['png']}: {job['sheet']}!{job['range']} ({os.path.getsize(job['png']) // 1024} kB)")
    return 0


if __name__ == "__main__":
    sys.path.insert(0, ROOT)
    sys.exit(main(sys.argv[1:]))
