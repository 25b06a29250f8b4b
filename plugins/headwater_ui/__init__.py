"""The Headwater page in the Airflow UI: an Airflow 3 plugin (a FastAPI app plus a nav entry).

Airflow imports every .py file of the plugins folder as a top-level module named after the file
(and puts the folder on sys.path, so this package also imports as `headwater_ui`); the modules are
named `ui_*` so that their file names cannot shadow anything else's `app` or `page`.

ui_plugin.py  the AirflowPlugin: the app mounted at /headwater and the "Headwater" nav entry
ui_app.py     the FastAPI app: GET / (the page), GET /api/summary (its figures as JSON), login
ui_store.py   the MongoDB reads the figures are built from (headwater/pipeline_summary.py)
ui_page.py    the page's HTML, rendered from the summary (pure)
"""
