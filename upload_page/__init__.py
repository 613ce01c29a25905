"""The "upload → wait → download" page at ``/restoration/`` on ComfyUI's own server.

Its files live here, outside ``web/``: the graph editor imports every ``*.js`` under ``web/`` as an
extension, and this page must not run inside the editor.
"""
