"""The Dash workbench over the engine: one server process, runs on a worker pool.

Modules: config (ServerConfig), layout (``build()`` composes the panels), panels/ (one module
per panel: its layout, ids and callbacks), ids (ids shared by several panels), components
(shared widgets), forms (generated from the engine's schema: widget values -> RunSpecs),
figures (pure plotly builders), registry (the RunRegistry facade) over access (who may read,
stop, share), pool (worker threads), live (the buffers polls read), records (run and task
records) and runstore (runs on disk as engine bundles, through engine/io.py), jobs (engine
calls, views, exports), frames (the /_wb/frames stream), server (``create_app``).
The workbench imports the engine; the engine never imports the workbench.
"""
