"""Using a trained model: a self-contained export and its encoder
(:mod:`~fusnet.serve.export`), and searching a run's database for one photo
(:mod:`~fusnet.serve.search`). Galleries of your own photos are :mod:`fusnet.index`."""
