"""The hosted connect page: an end user configures one source in the browser, white-labelled.

``POST /v4/connect/sessions`` (an account token) gives a session token and the page's URL; the page
(``/connect/<token>``) walks the session's one source through its report card's steps by calling
the same services the API uses (app/sources, app/oauth, app/discovery).
"""
