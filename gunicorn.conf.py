"""gunicorn's settings for the service. gunicorn reads ``./gunicorn.conf.py`` on its own when started
from the repository (``make run``, ``gunicorn wsgi:app``); elsewhere pass ``--config`` with this file.

The two hooks are explained in ``app/serving.py``: errors gunicorn answers before the app (a bad
request line or header, limits exceeded) are written in the service's JSON error shape, and a
connection whose request body may be left unread is closed after the response instead of being
dropped after a ``Connection: keep-alive``. gunicorn's request limits stay at their defaults
(``limit_request_line`` 4094, ``limit_request_field_size`` 8190, ``limit_request_fields`` 100).
"""

from app.serving import close_after_an_unread_body, use_json_error_pages

post_worker_init = use_json_error_pages
pre_request = close_after_an_unread_body
