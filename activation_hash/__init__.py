"""activation-hash: do trained ReLU networks behave as hash encoders?

Train a network, capture the binary activation pattern ("neural code") of every ReLU-like
unit on the train and test sets at scheduled epochs, and measure the paper's encoding
properties (redundancy, K-Means / K-NN / logistic-regression accuracy on the codes).

    python -m activation_hash                      # digits, embedded, no download
    python -m activation_hash data=mnist data.root=DATA model.width=100
"""

__version__ = "0.1.0"
