"""The managed OAuth handshake: OAuth apps, initiate, callback, secret_id.

``create_app`` wires it in: it loads the operator's apps (:func:`app.oauth.apps.init_app`), lets
source changes redeem a ``secret_id`` (:func:`app.oauth.handshake.redeem_secret`) and declares the
periodic job that deletes expired handshake rows.
"""
