"""A figure in a notebook: controls above it, the figure as a PNG image, a note under it.

The figure is drawn to PNG bytes and put in an `ipywidgets.Image`, so what the notebook shows
does not depend on matplotlib's backend or on the kernel capturing output: the image widget
holds exactly what is displayed, which is also what the tests read back.
"""

from __future__ import annotations

import base64
import html
import io
from collections.abc import Callable, Mapping
from dataclasses import dataclass

import PIL.Image  # installed with matplotlib
from matplotlib.figure import Figure

try:
    import ipywidgets as w
except ImportError:
    raise ImportError('the notebook explorers need ipywidgets: pip install -e ".[notebooks]"') from None

# Inches become pixels at this resolution, as in JupyterLab's own figures: kdviz.plots sizes
# figures (and their text) for it.
DPI = 100


def png_bytes(fig: Figure, dpi: int = DPI) -> bytes:
    """The figure as a PNG file in memory, in 256 colours: a third of the size of matplotlib's own
    RGBA file, which matters in notebooks saved with their outputs (and in widget state)."""
    drawn = io.BytesIO()
    fig.savefig(drawn, format="png", dpi=dpi)
    palette = PIL.Image.open(drawn).convert("RGB").quantize(256, dither=PIL.Image.Dither.NONE)
    out = io.BytesIO()
    palette.save(out, format="png", optimize=True)
    return out.getvalue()


@dataclass
class Drawing:
    """What a draw function returns for a view with several figures or a note: one figure (or
    None: nothing) per image of the view, and HTML for the note under them."""

    figures: list[Figure | None]
    note: str = ""


class FigureView(w.VBox):
    """`draw(**values of controls)` returns a Figure or a Drawing; it runs once now and again after
    every change of a control (or a click on `reload`, if asked for). `figures` are the Figures
    shown, `images` the Image widgets that show them, `note` the HTML widget under them.

    An error while redrawing after a change is shown in the note (an ipywidgets callback would
    otherwise only log it); an error in the first drawing is raised, since the inputs are wrong.
    Shown as a cell's value it also offers the last image as image/png, so that a notebook saved
    with its outputs shows the figure where widgets are not rendered (GitHub, nbviewer)."""

    def __init__(
        self,
        draw: Callable[..., Figure | Drawing],
        controls: Mapping[str, w.ValueWidget],
        *,
        images: int = 1,
        reload: bool = False,
    ):
        self.draw, self.controls = draw, dict(controls)
        self.images = [w.Image(format="png", layout=w.Layout(max_width="100%", height="auto")) for _ in range(images)]
        self.note = w.HTML()
        self.figures: list[Figure | None] = [None] * images
        self._drawing = False
        buttons = []
        if reload:
            button = w.Button(description="reload", tooltip="read the runs again (a run still training has new epochs)")
            button.on_click(lambda _: self._redraw_shown())
            buttons.append(button)
        bar = w.HBox([*self.controls.values(), *buttons], layout=w.Layout(flex_flow="row wrap"))
        super().__init__([bar, *self.images, self.note])
        for control in self.controls.values():
            control.observe(lambda _: self._redraw_shown(), "value")
        self.redraw()

    def values(self) -> dict:
        return {name: control.value for name, control in self.controls.items()}

    def redraw(self) -> None:
        """Draw with the controls' current values and show the result. Changes that `draw` makes
        to the controls (a slider's range, say) do not start another drawing."""
        if self._drawing:
            return
        self._drawing = True
        try:
            drawn = self.draw(**self.values())
        finally:
            self._drawing = False
        drawing = drawn if isinstance(drawn, Drawing) else Drawing([drawn])
        if len(drawing.figures) != len(self.images):
            raise ValueError(f"draw returned {len(drawing.figures)} figures for {len(self.images)} images")
        self.figures = list(drawing.figures)
        for image, fig in zip(self.images, self.figures):
            image.value = b"" if fig is None else png_bytes(fig)
            image.layout.display = "none" if fig is None else None
            if fig is not None:  # shown at its own size (kdviz.plots sizes text for it), narrower if it must
                image.layout.width = f"{round(fig.get_size_inches()[0] * DPI)}px"
        self.note.value = drawing.note

    def _redraw_shown(self) -> None:
        try:
            self.redraw()
        except Exception as e:  # shown to the user instead of only the kernel's log
            self.note.value = (
                f'<b style="color:#b00020">could not redraw: {html.escape(f"{type(e).__name__}: {e}")}</b>'
            )

    def _repr_mimebundle_(self, **kwargs):
        bundle = super()._repr_mimebundle_(**kwargs)
        shown = [image.value for image in self.images if image.value]
        if bundle is not None and shown:
            bundle["image/png"] = base64.b64encode(shown[-1]).decode("ascii")
        return bundle
