"""What the callbacks share at run time (private).

The run context a callback's ``run`` works with (:mod:`.context`), probe discovery
and loading (:mod:`.probe`), the per-trainer coordinator with the overhead budget
(:mod:`.coordinator`, :mod:`.budget`), the log writer (:mod:`.log`) and its backend
per logger (:mod:`.writers`; TensorBoard's projector files in :mod:`.projector`), the
cue-conflict cache (:mod:`.cue_cache`) and the Lightning imports (:mod:`.compat`).
"""
