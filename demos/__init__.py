"""Demos that import the library; the library (``avlearn``) never imports them.

* :mod:`demos.demo`: ``avlearn demo``, the end-to-end job on a generated synthetic collection
  (stages in :mod:`demos.demo_stages`, the report in :mod:`demos.demo_report`, its configs in
  ``demos/configs/``, shipped as package data);
* ``demos/localize_demo.py``: heatmap overlays from a pretrained checkpoint (a script).
"""
