"""Jupyter server extension: ``/caprl/status``, ``/caprl/caption``, ``/caprl/recent``, ``/caprl/settings``."""

from caprl_nb.server.app import CapRLApp

__all__ = ["CapRLApp"]
