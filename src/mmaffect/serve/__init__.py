"""``mmaffect serve``: a web page and a JSON API around the analysis of recordings and transcripts.

Needs the ``serve`` extra (``pip install -e ".[serve]"``): FastAPI, uvicorn and python-multipart.
Modules: :mod:`~mmaffect.serve.settings` (options and the bind check), :mod:`~mmaffect.serve.uploads`
(checking files by decoding them), :mod:`~mmaffect.serve.engine` (the models a worker holds),
:mod:`~mmaffect.serve.jobs` (worker pool, queue, retention), :mod:`~mmaffect.serve.app` (the routes).
"""
