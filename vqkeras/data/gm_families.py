"""General-MIDI programs mapped onto NSynth's instrument families and sources.

NSynth labels every note with one of 11 instrument families and one of 3
sources (how the sound was produced). The rendered dataset reuses those labels
so that code written for NSynth (filters by family/source, per-family plots)
works unchanged. GM programs with no NSynth counterpart (synth pads, synth
effects, drums and other unpitched percussion, sound effects) are left out.

Each program also gets a plausible MIDI pitch range (clipped to NSynth's
21..108) so the renderer does not play a tuba at 100 or a piccolo at 30.
"""

from __future__ import annotations

from typing import NamedTuple

NSYNTH_FAMILIES: tuple[str, ...] = (
    "bass", "brass", "flute", "guitar", "keyboard", "mallet",
    "organ", "reed", "string", "synth_lead", "vocal",
)
NSYNTH_SOURCES: tuple[str, ...] = ("acoustic", "electronic", "synthetic")
NSYNTH_QUALITIES: tuple[str, ...] = (
    "bright", "dark", "distortion", "fast_decay", "long_release",
    "multiphonic", "nonlinear_env", "percussive", "reverb", "tempo-synced",
)
MIN_PITCH, MAX_PITCH = 21, 108


class GMProgram(NamedTuple):
    """One General-MIDI program's NSynth labels and playable pitch range."""

    program: int
    name: str
    family: str
    source: str
    low: int
    high: int


# (program, GM name, family, source, lowest pitch, highest pitch)
_TABLE: tuple[tuple[int, str, str, str, int, int], ...] = (
    # Piano
    (0, "Acoustic Grand Piano", "keyboard", "acoustic", 21, 108),
    (1, "Bright Acoustic Piano", "keyboard", "acoustic", 21, 108),
    (2, "Electric Grand Piano", "keyboard", "electronic", 21, 108),
    (3, "Honky-tonk Piano", "keyboard", "acoustic", 21, 108),
    (4, "Electric Piano 1", "keyboard", "electronic", 28, 103),
    (5, "Electric Piano 2", "keyboard", "electronic", 28, 103),
    (6, "Harpsichord", "keyboard", "acoustic", 29, 89),
    (7, "Clavinet", "keyboard", "electronic", 29, 89),
    # Chromatic percussion
    (8, "Celesta", "mallet", "acoustic", 60, 108),
    (9, "Glockenspiel", "mallet", "acoustic", 67, 108),
    (10, "Music Box", "mallet", "acoustic", 60, 108),
    (11, "Vibraphone", "mallet", "acoustic", 53, 89),
    (12, "Marimba", "mallet", "acoustic", 45, 96),
    (13, "Xylophone", "mallet", "acoustic", 65, 108),
    (14, "Tubular Bells", "mallet", "acoustic", 60, 77),
    (15, "Dulcimer", "mallet", "acoustic", 50, 88),
    # Organ (accordions and harmonica blow through reeds)
    (16, "Drawbar Organ", "organ", "electronic", 36, 96),
    (17, "Percussive Organ", "organ", "electronic", 36, 96),
    (18, "Rock Organ", "organ", "electronic", 36, 96),
    (19, "Church Organ", "organ", "acoustic", 24, 96),
    (20, "Reed Organ", "organ", "acoustic", 36, 96),
    (21, "Accordion", "reed", "acoustic", 41, 89),
    (22, "Harmonica", "reed", "acoustic", 60, 96),
    (23, "Tango Accordion", "reed", "acoustic", 41, 89),
    # Guitar
    (24, "Acoustic Guitar (nylon)", "guitar", "acoustic", 40, 84),
    (25, "Acoustic Guitar (steel)", "guitar", "acoustic", 40, 84),
    (26, "Electric Guitar (jazz)", "guitar", "electronic", 40, 86),
    (27, "Electric Guitar (clean)", "guitar", "electronic", 40, 86),
    (28, "Electric Guitar (muted)", "guitar", "electronic", 40, 86),
    (29, "Overdriven Guitar", "guitar", "electronic", 40, 86),
    (30, "Distortion Guitar", "guitar", "electronic", 40, 86),
    (31, "Guitar Harmonics", "guitar", "electronic", 52, 96),
    # Bass
    (32, "Acoustic Bass", "bass", "acoustic", 28, 67),
    (33, "Electric Bass (finger)", "bass", "electronic", 28, 67),
    (34, "Electric Bass (pick)", "bass", "electronic", 28, 67),
    (35, "Fretless Bass", "bass", "electronic", 28, 67),
    (36, "Slap Bass 1", "bass", "electronic", 28, 67),
    (37, "Slap Bass 2", "bass", "electronic", 28, 67),
    (38, "Synth Bass 1", "bass", "synthetic", 24, 67),
    (39, "Synth Bass 2", "bass", "synthetic", 24, 67),
    # Strings (timpani is unpitched enough to leave out)
    (40, "Violin", "string", "acoustic", 55, 100),
    (41, "Viola", "string", "acoustic", 48, 88),
    (42, "Cello", "string", "acoustic", 36, 76),
    (43, "Contrabass", "string", "acoustic", 28, 67),
    (44, "Tremolo Strings", "string", "acoustic", 36, 96),
    (45, "Pizzicato Strings", "string", "acoustic", 36, 96),
    (46, "Orchestral Harp", "string", "acoustic", 24, 103),
    # Ensemble (orchestra hit left out)
    (48, "String Ensemble 1", "string", "acoustic", 36, 96),
    (49, "String Ensemble 2", "string", "acoustic", 36, 96),
    (50, "Synth Strings 1", "string", "synthetic", 36, 96),
    (51, "Synth Strings 2", "string", "synthetic", 36, 96),
    (52, "Choir Aahs", "vocal", "acoustic", 48, 79),
    (53, "Voice Oohs", "vocal", "acoustic", 48, 79),
    (54, "Synth Voice", "vocal", "synthetic", 48, 84),
    # Brass
    (56, "Trumpet", "brass", "acoustic", 54, 86),
    (57, "Trombone", "brass", "acoustic", 40, 77),
    (58, "Tuba", "brass", "acoustic", 28, 65),
    (59, "Muted Trumpet", "brass", "acoustic", 54, 86),
    (60, "French Horn", "brass", "acoustic", 34, 77),
    (61, "Brass Section", "brass", "acoustic", 36, 84),
    (62, "Synth Brass 1", "brass", "synthetic", 36, 84),
    (63, "Synth Brass 2", "brass", "synthetic", 36, 84),
    # Reed
    (64, "Soprano Sax", "reed", "acoustic", 56, 88),
    (65, "Alto Sax", "reed", "acoustic", 49, 81),
    (66, "Tenor Sax", "reed", "acoustic", 44, 76),
    (67, "Baritone Sax", "reed", "acoustic", 36, 69),
    (68, "Oboe", "reed", "acoustic", 58, 91),
    (69, "English Horn", "reed", "acoustic", 52, 81),
    (70, "Bassoon", "reed", "acoustic", 34, 75),
    (71, "Clarinet", "reed", "acoustic", 50, 91),
    # Pipe
    (72, "Piccolo", "flute", "acoustic", 74, 108),
    (73, "Flute", "flute", "acoustic", 60, 96),
    (74, "Recorder", "flute", "acoustic", 60, 96),
    (75, "Pan Flute", "flute", "acoustic", 60, 96),
    (76, "Blown Bottle", "flute", "acoustic", 60, 84),
    (77, "Shakuhachi", "flute", "acoustic", 55, 84),
    (78, "Whistle", "flute", "acoustic", 72, 96),
    (79, "Ocarina", "flute", "acoustic", 60, 84),
    # Synth lead
    (80, "Lead 1 (square)", "synth_lead", "synthetic", 36, 96),
    (81, "Lead 2 (sawtooth)", "synth_lead", "synthetic", 36, 96),
    (82, "Lead 3 (calliope)", "synth_lead", "synthetic", 36, 96),
    (83, "Lead 4 (chiff)", "synth_lead", "synthetic", 36, 96),
    (84, "Lead 5 (charang)", "synth_lead", "synthetic", 36, 96),
    (85, "Lead 6 (voice)", "synth_lead", "synthetic", 36, 96),
    (86, "Lead 7 (fifths)", "synth_lead", "synthetic", 36, 96),
    (87, "Lead 8 (bass + lead)", "synth_lead", "synthetic", 28, 84),
    # Ethnic (pitched ones only)
    (104, "Sitar", "string", "acoustic", 48, 84),
    (105, "Banjo", "guitar", "acoustic", 48, 84),
    (106, "Shamisen", "string", "acoustic", 50, 84),
    (107, "Koto", "string", "acoustic", 55, 91),
    (108, "Kalimba", "mallet", "acoustic", 60, 96),
    (109, "Bagpipe", "reed", "acoustic", 55, 77),
    (110, "Fiddle", "string", "acoustic", 55, 96),
    (111, "Shanai", "reed", "acoustic", 60, 91),
    # Pitched percussion
    (112, "Tinkle Bell", "mallet", "acoustic", 72, 108),
    (114, "Steel Drums", "mallet", "acoustic", 52, 88),
)

GM_PROGRAMS: dict[int, GMProgram] = {row[0]: GMProgram(*row) for row in _TABLE}


def gm_program(program: int) -> GMProgram:
    """Return the NSynth labels of a General-MIDI program.

    Parameters
    ----------
    program : int
        0-based GM program number (0 = Acoustic Grand Piano).

    Raises
    ------
    ValueError
        If the program is outside 0..127 or has no NSynth family (synth pads
        88-95, synth effects 96-103, timpani, orchestra hit, unpitched
        percussion 113 and 115-119, sound effects 120-127).
    """
    if program not in GM_PROGRAMS:
        if not 0 <= int(program) <= 127:
            raise ValueError(f"GM program must be in 0..127. Received: program={program}")
        raise ValueError(
            f"GM program {program} has no NSynth instrument family (pads, effects and "
            f"unpitched percussion are not rendered). Received: program={program}")
    return GM_PROGRAMS[program]


def family_of_note_name(name: str) -> str | None:
    """The NSynth instrument family in an NSynth note name, or None if it is not one.

    NSynth (and `vqkeras data render`) names a note
    ``<family>_<source>_<NNN>-<pitch>-<velocity>``, e.g.
    ``synth_lead_synthetic_001-060-100`` (a file name's suffix is ignored).
    """
    stem = name.rsplit("/", 1)[-1]
    stem = stem[:-4] if stem.lower().endswith(".wav") else stem
    instrument, _, rest = stem.partition("-")
    parts = rest.split("-")
    if len(parts) != 2 or not all(p.isdigit() for p in parts):
        return None
    for source in NSYNTH_SOURCES:
        head, sep, number = instrument.rpartition(f"_{source}_")
        if sep and number.isdigit() and head in NSYNTH_FAMILIES:
            return head
    return None


def family_of_recipe(recipe: str) -> str | None:
    """The NSynth family of a rendered note's recipe (``...:program=70:...``), or None.

    The codec mix's manifest names each note by such a recipe
    (`vqkeras.data.codec_mix.note_clips`); the GM program maps to a family
    through `GM_PROGRAMS`.
    """
    for field in recipe.split(":"):
        key, sep, value = field.partition("=")
        if sep and key == "program":
            try:
                info = GM_PROGRAMS.get(int(value))
            except ValueError:
                return None
            return None if info is None else info.family
    return None
