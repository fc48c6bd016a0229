"""What a run leaves on disk: a results folder (``results``), its tables and figures (``reports``), a
run's files landing as a unit (``commit``), and the mean and spread over seeds (``aggregate``). Imports
everything below it (kernel, ``ood.system``, ``ood.data``, ``ood.evaluation``)."""
