// TorCells module.
