"""The Dash workbench over the engine: one server process, runs on a worker pool.

Modules: config (ServerConfig), ids (component ids), layout (``build()``), components,
forms (widget values -> RunSpecs), figures (pure plotly builders), registry (runs, owners,
pool), runstore (run_dir persistence), jobs (engine calls, views, exports), frames (the
/_wb/frames stream), callbacks (every Dash callback), server (``create_app``).
The workbench imports the engine; the engine never imports the workbench.
"""
