"""The machine a run uses and what it records of itself: the device and what produced the numbers
(``device``), precision, memory layout, compilation and torchrun (``accel``), progress lines where no terminal
shows a bar (``progress``), and what a launched step read (``inputs``, for the launcher's markers).
Imports only the kernel (``ood.errors``, ``ood.io``)."""
