"""Test harness: a real ComfyUI server in a subprocess and a small aiohttp client for it."""
