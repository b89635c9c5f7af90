import os

# Without a display Qt aborts the whole pytest process; offscreen renders into memory instead.
os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")
# Tests must never touch the user's real data folder or the network.
os.environ.setdefault("PERCEIVER_GUI_OFFLINE", "1")
# Small test models run fastest on one thread, and parallel test runs do not fight over cores.
os.environ.setdefault("OMP_NUM_THREADS", "1")
