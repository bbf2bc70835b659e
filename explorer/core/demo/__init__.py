"""The demo task: drawn shapes whose deciding pixels are known (the generator and its masks), and the training
of the small Inception that has learned them, so that the explorer shows a network that works offline."""
