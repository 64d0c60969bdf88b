"""gdkvm browser demo: upload an echo clip, see the overlay video, the LV area curve with ED/ES, and the EF.

Only layout lives here; the work is ``gdkvm.demo.analyze``. Start it with ``gdkvm demo`` (binds 127.0.0.1).
"""

from __future__ import annotations

import os

os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")

import gradio as gr  # noqa: E402

from gdkvm.demo import BEAT_HEADERS, beat_rows, example_clips, safe_analyze  # noqa: E402

UPLOAD_TYPES = [".avi", ".mp4", ".dcm", ".nii", ".gz", ".mhd", ".raw", ".zraw"]
INTRO = """# gdkvm: echo video segmentation and ejection fraction
Upload an apical clip (.avi, .mp4, DICOM, .nii.gz or .mhd) or pick a synthetic example, then press **Segment**.
The default model is trained on **synthetic** echo only: not for clinical use."""


def build_app(ckpt: str = "default", device: str | None = None) -> gr.Blocks:
    """The Gradio Blocks page; ``ckpt`` is the checkpoint preselected in the model box."""
    examples = example_clips()

    def run(upload, example, a2c_upload, view, fps, model_ckpt, progress=gr.Progress()):  # noqa: B008
        path = upload or (examples.get(example) if example else None)
        if path is None:
            return None, None, [], None, "Error: upload a clip or pick an example first."
        a4c, a2c = (path, a2c_upload) if view == "A4C" else (a2c_upload, path)
        if a4c is None:  # an A2C clip alone: single-plane EF on it
            a4c, a2c = path, None
        progress(0.0, desc="loading the model")
        result, error = safe_analyze(
            a4c, ckpt=model_ckpt or ckpt, a2c_path=a2c, fps=fps or None, device=device, progress=progress
        )
        if result is None:
            return None, None, [], None, error
        files = [str(p) for p in result.files]
        return str(result.overlay), result.figure, beat_rows(result.report), files, result.message

    with gr.Blocks(title="gdkvm demo") as demo:
        gr.Markdown(INTRO)
        with gr.Row():
            with gr.Column(scale=1):
                upload = gr.File(label="Echo clip", file_types=UPLOAD_TYPES, type="filepath", elem_id="upload")
                example = gr.Dropdown(
                    choices=list(examples), value=None, label="...or a synthetic example", elem_id="example"
                )
                view = gr.Radio(["A4C", "A2C"], value="A4C", label="View of the clip")
                a2c = gr.File(
                    label="Optional second view (A2C) for biplane EF", file_types=UPLOAD_TYPES, type="filepath"
                )
                fps = gr.Number(label="Frame rate if the file has none (fps)", value=None, precision=2)
                model_ckpt = gr.Textbox(label="Model (checkpoint path or 'default')", value=ckpt)
                button = gr.Button("Segment", variant="primary", elem_id="run")
            with gr.Column(scale=2):
                status = gr.Markdown(elem_id="status")
                video = gr.Video(label="Overlay", elem_id="overlay", autoplay=True, loop=True, interactive=False)
                plot = gr.Plot(label="LV area curve", elem_id="curve")
                table = gr.Dataframe(headers=BEAT_HEADERS, label="EF per beat", interactive=False, elem_id="beats")
                files = gr.File(label="Downloads", file_count="multiple", interactive=False, elem_id="downloads")
        button.click(
            run,
            inputs=[upload, example, a2c, view, fps, model_ckpt],
            outputs=[video, plot, table, files, status],
            api_name="segment",
        )
    return demo


def launch(
    ckpt: str = "default",
    host: str = "127.0.0.1",
    port: int = 7860,
    device: str | None = None,
    max_file_size: str = "300mb",
    concurrency: int = 2,
    prevent_thread_lock: bool = False,
) -> gr.Blocks:
    """Build and serve the page: a queue shared by all users, an upload size limit, local binding by default."""
    demo = build_app(ckpt, device)
    demo.queue(default_concurrency_limit=concurrency, max_size=64)
    demo.launch(
        server_name=host,
        server_port=port,
        max_file_size=max_file_size,
        show_error=True,
        prevent_thread_lock=prevent_thread_lock,
        quiet=True,
    )
    return demo


if __name__ == "__main__":
    launch()
