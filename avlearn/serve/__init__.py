"""``avlearn serve``: a local web page to explore where a model hears the sound (Gradio, optional
extra ``serve``). :mod:`~avlearn.serve.session` computes, :mod:`~avlearn.serve.app` is the page."""
