"""Clip decoding, one concern per file; :mod:`avlearn.data.decode` is the interface to use.

* :mod:`~avlearn.data.decoding.clip`: :class:`ClipSpec`, :class:`Clip`, the media, :class:`DecodeError`;
* :mod:`~avlearn.data.decoding.frames`: the frame geometry both video backends share;
* :mod:`~avlearn.data.decoding.media`: opening files and bytes with PyAV, durations;
* :mod:`~avlearn.data.decoding.audio`: audio windows (PyAV, for both backends);
* :mod:`~avlearn.data.decoding.clock`: the profiling clock (:func:`stage_times`);
* one file per video backend: :mod:`~avlearn.data.decoding.pyav_backend`,
  :mod:`~avlearn.data.decoding.decord_backend`, each registered in ``DECODERS``.
"""
