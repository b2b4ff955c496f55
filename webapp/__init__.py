"""The hosts: the ``huntaze`` command line and the web application."""
