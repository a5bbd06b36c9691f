"""Acoustic scene simulator: scenario -> per-sensor audio + truth.

>>> from shotline.simulate import load_scenario, render, write_rendering
>>> # rendering = render(load_scenario("scenarios/test-block.json"))
>>> # write_rendering(rendering, "sim-out")   # audio, manifest.json, truth.json

See ``docs/simulator.md`` for the scenario format and the models.
"""
from .output import write_rendering
from .render import Rendering, SensorTrack, render
from .scenario import Scenario, ScenarioError, load_scenario, parse_scenario
from .sources import KINDS

__all__ = ["KINDS", "Rendering", "Scenario", "ScenarioError", "SensorTrack", "load_scenario",
           "parse_scenario", "render", "write_rendering"]
