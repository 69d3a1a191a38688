"""Render PNG pictures of a book's tabs for the docs: docs/guide.png, block0.png, attention.png,
predict.png, logit_lens.png, saliency.png, embeddings.png, generate.png, neurons.png, steering.png and
steering_predict.png (after typing the documented
flip into the Steering tab: " slow", " quick", strength 1, block 0); from the training book (--train),
train.png and train_swiftly.png (after typing the target " swiftly").

    python scripts/render_docs.py [--model DIR] [--prompt TEXT] [--out docs]

Builds the bundled model's book (``sheetgpt/data/tiny``; until it exists, a seeded random model),
recalculates it in headless LibreOffice (values are real, not xlsxwriter's placeholders for CSE
cells), exports one cell range per picture to PDF at natural size (one page sized to the range,
grid and column/row headers printed) and turns each PDF into a PNG with ``pdftoppm -r 80``.

The LibreOffice part runs under the system python (python3-uno): this same file, called as
``/usr/bin/python3 render_docs.py --uno REQUEST.json``, imports only the standard library, uno and
sheetgpt/engine/lo_bridge.py (for its profile and connection helpers).
"""

import json
import os
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
MARGIN = 300  # page margin, 1/100 mm


# ---------------------------------------------------------------- the UNO side (system python)


def uno_main(req_path):
    sys.path.insert(0, os.path.join(ROOT, "sheetgpt", "engine"))
    import lo_bridge as lb
    import uno

    with open(req_path, encoding="utf-8") as f:
        req = json.load(f)
    with lb.soffice_session(req, time.monotonic() + 120, "sheetgpt_docs") as (ctx, desktop, _mode):
        doc = lb.load_document(desktop, req["book"])
        doc.calculateAll()
        doc.enableAutomaticCalculation(False)
        styles = doc.StyleFamilies.getByName("PageStyles")
        for job in req["jobs"]:
            if job.get("set"):  # values typed into cells first (the Steering tab after a flip), then recalculated
                for sheet_name, ref, value in job["set"]:
                    cell = doc.Sheets.getByName(sheet_name).getCellRangeByName(ref)
                    cell.setString(value) if isinstance(value, str) else cell.setValue(value)
                doc.calculateAll()
            sheet = doc.Sheets.getByName(job["sheet"])
            area = sheet.getCellRangeByName(job["range"])
            a = area.getRangeAddress()
            width = sum(sheet.Columns.getByIndex(c).Width for c in range(a.StartColumn, a.EndColumn + 1))
            height = sum(sheet.Rows.getByIndex(r).Height for r in range(a.StartRow, a.EndRow + 1))
            style = styles.getByName(sheet.PageStyle)
            style.HeaderIsOn = False
            style.FooterIsOn = False
            style.PrintGrid = True
            style.PrintHeaders = True  # column letters and row numbers: it looks like a spreadsheet
            style.PrintAnnotations = False
            style.ScaleToPagesX = 0
            style.ScaleToPagesY = 0
            style.PageScale = 100
            for side in ("LeftMargin", "RightMargin", "TopMargin", "BottomMargin"):
                setattr(style, side, MARGIN)
            style.Width = width + 2 * MARGIN + 1200  # + the row-number column
            style.Height = height + 2 * MARGIN + 800  # + the column-letter row
            filter_data = uno.Any(
                "[]com.sun.star.beans.PropertyValue",
                (lb.prop("Selection", area), lb.prop("ExportNotes", False), lb.prop("ExportNotesInMargin", False)),
            )
            doc.storeToURL(
                lb.file_url(job["pdf"]), (lb.prop("FilterName", "calc_pdf_Export"), lb.prop("FilterData", filter_data))
            )
        doc.close(True)
        return 0


# ---------------------------------------------------------------- the sheetgpt side


def build_book(model_dir, prompt, out):
    from pathlib import Path

    from sheetgpt.book.writer import build_workbook
    from sheetgpt.checkpoint import load_model
    from sheetgpt.cli_book import DEFAULT_GENERATE_ROWS, DEFAULT_PROMPT
    from sheetgpt.random_model import SHAPES, make_random_model
    from sheetgpt.tokenizer import Tokenizer

    if model_dir is None:
        bundled = Path(ROOT) / "sheetgpt" / "data" / "tiny"
        if (bundled / "config.json").exists():
            model_dir = bundled
        else:
            model_dir = Path(tempfile.mkdtemp(prefix="sheetgpt_docs_model_"))
            make_random_model(model_dir, SHAPES["one-head"], 0)
            prompt = prompt or "the cat sat"
            print(f"no bundled model at {bundled}: using a random one-head model", file=sys.stderr)
    model = load_model(model_dir)
    prompt = prompt or DEFAULT_PROMPT
    tokenizer = Tokenizer.from_dir(model_dir)
    # as `sheetgpt build` does: a typed-prompt book when the prompt fits the formulas, generating to fill its rows
    rows = min(DEFAULT_GENERATE_ROWS, model.config.n_positions)
    generate = max(rows - len(tokenizer.encode(prompt)), 0)
    return build_workbook(
        model,
        tokenizer,
        prompt,
        out,
        force=True,
        source=str(model_dir),
        typed_prompt=None,
        generate=generate,
        explain=True,
    )


def jobs_for(result, outdir, workdir):
    """(sheet, A1 range, png name) for each picture, sized from the book's layout."""
    from sheetgpt.a1 import cell as a1
    from sheetgpt.book.tabs import block, embeddings, guide, logit_lens, neurons, predict, saliency, steering, vocab
    from sheetgpt.book.tabs import prompt as prompt_tab

    layout = result.layout
    T = layout.T
    R = layout.regions
    last = layout.config.n_layer - 1  # the bundled model finds the antecedent in its last block
    weights = R[f"h.{last}.attn.weights"]
    lens_out = R["lens.out"]
    norm = R["h.0.ln_1.norm"]
    n_tabs = next(k for k, t in enumerate(layout.tabs) if t.name == vocab.NAME)
    jobs = [
        (guide.NAME, "A1:" + a1(guide.prompt_row(layout) + 5 + n_tabs, 1), "guide"),
        (block.name(0), "A1:" + a1(norm.bottom, min(norm.right, 11)), "block0"),
        (
            block.name(last),
            a1(weights.top - 5, 0) + ":" + a1(weights.bottom, min(weights.right, 2 + 2 * (T + 1) - 2)),
            "attention",
        ),
        (predict.NAME, "A1:" + a1(R["predict.probs"].top + 30, 13), "predict"),
        (logit_lens.NAME, "A1:" + a1(lens_out.bottom, min(lens_out.right, 9)), "logit_lens"),
        (embeddings.NAME, "A1:" + a1(R["emb.near.query"].bottom, 11), "embeddings"),
        (saliency.NAME, "A1:" + a1(saliency.SUMMARY_TOP + T - 1, 4), "saliency"),
    ]
    if layout.generate:
        jobs.append((prompt_tab.NAME, "A1:" + a1(prompt_tab.TOP + T - 1, prompt_tab.SO_FAR_COL), "generate"))
    if layout.steer:
        jobs.append((neurons.NAME, "A1:" + a1(R["neurons.heat"].bottom, 2 + neurons.K - 1), "neurons"))
    out = [
        {
            "sheet": s,
            "range": r,
            "pdf": os.path.join(workdir, name + ".pdf"),
            "png": os.path.join(outdir, name + ".png"),
        }
        for s, r, name in jobs
    ]
    if layout.steer:  # last: it changes the book
        add = R["steer.add"]
        flip = [
            (steering.NAME, a1(steering.A_ROW, steering.VALUE_COL), " slow"),
            (steering.NAME, a1(steering.B_ROW, steering.VALUE_COL), " quick"),
            (steering.NAME, a1(steering.STRENGTH_ROW, steering.VALUE_COL), 1.0),
            (steering.NAME, a1(steering.BLOCK_ROW, steering.VALUE_COL), 0),
        ]
        for sheet, rng, name in (
            (steering.NAME, "A1:" + a1(add.bottom, 9), "steering"),
            (predict.NAME, "A1:" + a1(R["predict.probs"].top + 14, 13), "steering_predict"),
        ):
            out.append(
                {
                    "sheet": sheet,
                    "range": rng,
                    "set": flip,
                    "pdf": os.path.join(workdir, name + ".pdf"),
                    "png": os.path.join(outdir, name + ".png"),
                }
            )
    return out


def train_jobs(model_dir, prompt, book, outdir, workdir):
    """The training book (`sheetgpt build --train`) and its pictures: train.png, the Train tab as built
    (the predicted token, learning rate 0.005), and train_swiftly.png after typing the target " swiftly"."""
    from sheetgpt.a1 import cell as a1
    from sheetgpt.book.tabs import train
    from sheetgpt.book.writer import build_workbook
    from sheetgpt.checkpoint import default_model_dir, load_model
    from sheetgpt.cli_book import DEFAULT_PROMPT
    from sheetgpt.tokenizer import Tokenizer

    model_dir = model_dir or str(default_model_dir())
    model = load_model(model_dir)
    build_workbook(model, Tokenizer.from_dir(model_dir), prompt or DEFAULT_PROMPT, book, force=True, train=True)
    n = len(model.flat)
    rng = "A1:" + a1(train.NORMS_ROW + min(n, 6) - 1, 4)  # the cells, the new top 5 and the first gradient norms
    swiftly = [(train.NAME, a1(train.TARGET_ROW, train.VALUE_COL), " swiftly")]
    return [
        {
            "sheet": train.NAME,
            "range": rng,
            **({"set": s} if s else {}),
            "pdf": os.path.join(workdir, name + ".pdf"),
            "png": os.path.join(outdir, name + ".png"),
        }
        for s, name in ((None, "train"), (swiftly, "train_swiftly"))
    ]


def main(argv):
    import argparse

    from sheetgpt.engine.libreoffice import SYSTEM_PYTHON, find_soffice

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", default=None, help="model directory (default: the bundled sheetgpt/data/tiny)")
    ap.add_argument("--prompt", default=None, help="the book's prompt (default: a sentence the model knows)")
    ap.add_argument("--out", default=os.path.join(ROOT, "docs"), help="where the PNGs go")
    ap.add_argument("--dpi", type=int, default=80)
    args = ap.parse_args(argv)
    os.makedirs(args.out, exist_ok=True)
    workdir = tempfile.mkdtemp(prefix="sheetgpt_docs_")
    book = os.path.join(workdir, "book.xlsx")
    result = build_book(args.model, args.prompt, book)
    jobs = jobs_for(result, args.out, workdir)
    train_book = os.path.join(workdir, "train.xlsx")
    more = train_jobs(args.model, args.prompt, train_book, args.out, workdir)
    for k, (path, some) in enumerate(((book, jobs), (train_book, more))):
        req = {"soffice": find_soffice(), "profile": os.path.join(workdir, "profile"), "book": path, "jobs": some}
        req_path = os.path.join(workdir, f"request{k}.json")
        with open(req_path, "w", encoding="utf-8") as f:
            json.dump(req, f)
        subprocess.run(
            [SYSTEM_PYTHON, os.path.abspath(__file__), "--uno", req_path],
            check=True,
            timeout=600,
            start_new_session=True,
        )
    for job in jobs + more:
        stem = job["png"][: -len(".png")]
        subprocess.run(
            ["pdftoppm", "-png", "-r", str(args.dpi), "-singlefile", "-f", "1", "-l", "1", job["pdf"], stem], check=True
        )
        print(f"{job['png']}: {job['sheet']}!{job['range']} ({os.path.getsize(job['png']) // 1024} kB)")
    return 0


if __name__ == "__main__":
    if len(sys.argv) == 3 and sys.argv[1] == "--uno":
        sys.exit(uno_main(sys.argv[2]))
    sys.path.insert(0, ROOT)
    sys.exit(main(sys.argv[1:]))
