"""Datasets: soundfont rendering into NSynth's layout, and the NSynth, MNIST
(IDX) and CIFAR-10 loaders. Import the submodules directly, e.g.
``from vqkeras.data.nsynth import NSynthDataset``; nothing heavy loads here.
"""
