"""Offers and discounts, a built-in plugin that brings its own tables.

It reaches the engine only through ``engine.plugin_api`` and the entry points in our
``pyproject.toml``, as a third-party plugin would: the action ``create_offer``, the
trigger ``offer_redeemed``, its tables (``huntaze.metadata``) and their migrations
(``huntaze.migrations``, an Alembic branch labelled ``offers``). ``OffersService`` is
the API: create, read, update, delete, list by status, duplicate, redeem.
"""
