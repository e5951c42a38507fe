"""Real-browser test of the protein source fields (issue 10, items 10, 13): an upload that the
force field cannot model is refused next to the field with its residues and the atom limit
named, a protein is accepted with its size; the structure dropdown holds names, never server
paths. Headless Chromium against the workbench (real engine), every wait on a condition."""

from __future__ import annotations

import json

import pytest
from browser_util import chromium_missing, open_workbench, text_of, wait_until, workbench_config

from engine.protein.build import MAX_HEAVY_ATOMS
from tests.conftest import shared_pdb

pytestmark = [pytest.mark.browser, pytest.mark.slow]

if chromium_missing():
    pytest.skip(chromium_missing(), allow_module_level=True)


MSG = "#wb-upload-msg"


@pytest.fixture(scope="module")
def page(tmp_path_factory):
    protein = shared_pdb("1PLW_native.pdb")
    folder = tmp_path_factory.mktemp("structures")
    with open(protein, "rb") as src, open(folder / "mini.pdb", "wb") as dst:
        dst.write(src.read())
    config = workbench_config(tmp_path_factory.mktemp("runs"), structure_dirs=(str(folder),))
    with open_workbench(config, viewport=(1366, 768)) as page:
        page.folder, page.protein = str(folder), protein
        yield page


def upload(page, name: str, data: bytes) -> None:
    page.set_input_files(
        "#wb-upload input[type=file]",
        files=[{"name": name, "mimeType": "chemical/x-pdb", "buffer": data}],
    )


def test_uploads_are_checked_and_the_dropdown_holds_names(page):
    page.get_by_text("Protein", exact=True).click()
    key = json.dumps({"name": "protein.structure", "type": "field"}, separators=(",", ":"))
    dropdown = page.evaluate(
        "(id) => window.dash_component_api.getLayout(JSON.parse(id)).props", key
    )
    values = [o["value"] for o in dropdown["options"]]
    assert values == ["villin", "mini.pdb"] and dropdown["value"] == "villin"
    assert page.folder not in page.content()
    line = page.inner_text("#wb-upload ~ .wb-range >> nth=1")
    assert f"up to {MAX_HEAVY_ATOMS:,} heavy atoms" in line and "10 uploads" in line
    water = "".join(
        f"HETATM{k + 1:5d}  O   HOH A{k + 1:4d}    {3.0 * k:8.3f}   0.000   0.000  1.00  0.00"
        "           O\n"
        for k in range(5)
    )
    upload(page, "water.pdb", water.encode())
    wait_until(page, f"{text_of(MSG)}.includes('cannot be modelled')", 30, "the refusal")
    message = page.inner_text(MSG)
    assert "only water (residues present: HOH x5)" in message
    assert f"up to {MAX_HEAVY_ATOMS:,} heavy atoms" in message
    with open(page.protein, "rb") as fh:
        upload(page, "enkephalin.pdb", fh.read())
    wait_until(page, f"{text_of(MSG)}.startsWith('enkephalin')", 60, "the acceptance")
    assert page.inner_text(MSG).startswith(
        "enkephalin.pdb: accepted, 5 residues, 40 heavy atoms (75 with"
    )
    source = page.locator("#wb-protein-source input[value=upload]")
    assert source.is_checked()  # the form switched to the upload
