"""The kopf registrations: every handler in one module, the startup settings."""

from __future__ import annotations

import kopf

from smartgrid_operator import handlers


def test_startup_names_the_finalizer_after_the_api_group_and_keeps_kopf_state_in_annotations():
    settings = kopf.OperatorSettings()
    handlers.configure(settings=settings)
    assert settings.persistence.finalizer == "smartgrid.io/finalizer"
    assert isinstance(settings.persistence.progress_storage, kopf.AnnotationsProgressStorage)
    assert settings.networking.request_timeout == 60


def test_create_update_resume_delete_and_the_resync_timer_are_registered():
    registry = kopf.get_default_registry()
    ours = [h for h in registry._changing.get_all_handlers() if h.fn.__module__ == handlers.__name__]
    assert {h.selector.group for h in ours} == {"smartgrid.io"}
    by_reason = {(h.fn.__name__, str(h.reason) if h.reason else "resume") for h in ours}
    assert {
        ("apply_spec", "create"),
        ("apply_spec", "update"),
        ("apply_spec", "resume"),
        ("delete_owned", "delete"),
    } <= by_reason
    timers = [h for h in registry._spawning.get_all_handlers() if h.fn is handlers.resync]
    assert len(timers) == 1 and timers[0].interval == handlers.RESYNC_SECONDS
