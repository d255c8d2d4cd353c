"""Pieces that several methods compose (samplers, schedules); no method registers here."""
