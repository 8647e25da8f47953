"""MUSHRA listening tests (ITU-R BS.1534-3): build the stimuli and page (:mod:`.build`), run the page on a
loopback server (:mod:`.server`), screen and summarise the ratings (:mod:`.analyze`).

Only :mod:`.build` imports the audio stack (and with it torch); serving and analysis stay light.
"""

from .common import ANCHORS, HIDDEN_REFERENCE, PARTICIPANT_FIELDS, MushraError, csv_header, load_test

__all__ = ["ANCHORS", "HIDDEN_REFERENCE", "PARTICIPANT_FIELDS", "MushraError", "csv_header", "load_test"]
