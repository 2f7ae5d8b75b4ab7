"""The classical baseline every adapter is measured against, trained on the same split.

Tags and categories: TF-IDF over word 1-2-grams and character 2-5-grams with logistic
regression (one-vs-rest for tags). Descriptions: the description of the most similar
training title by the same TF-IDF features (nearest neighbour), the classical
retrieval answer to "describe this product".
"""

from __future__ import annotations

import numpy as np
from sklearn.feature_extraction.text import TfidfVectorizer
from sklearn.linear_model import LogisticRegression
from sklearn.multiclass import OneVsRestClassifier
from sklearn.pipeline import FeatureUnion
from sklearn.preprocessing import MultiLabelBinarizer


def _features() -> FeatureUnion:
    return FeatureUnion(
        [
            ("word", TfidfVectorizer(ngram_range=(1, 2), min_df=1, sublinear_tf=True)),
            ("char", TfidfVectorizer(analyzer="char_wb", ngram_range=(2, 5), min_df=2, sublinear_tf=True)),
        ]
    )


class TfidfBaseline:
    """``fit(texts, targets)`` then ``predict(texts)``; targets are label lists, labels or descriptions."""

    def __init__(self, task: str, labels: list[str] | None = None, seed: int = 42):
        self.task = task
        self.labels = labels
        self.seed = seed
        self.features = _features()

    def fit(self, texts: list[str], targets: list) -> TfidfBaseline:
        x = self.features.fit_transform(texts)
        if self.task == "tagging":
            self.binarizer = MultiLabelBinarizer(classes=self.labels)
            y = self.binarizer.fit_transform([[t for t in row if t in set(self.labels)] for row in targets])
            self.model = OneVsRestClassifier(LogisticRegression(max_iter=2000, C=10.0, class_weight="balanced"))
            # A label seen in every or no training row cannot be learned by a binary classifier.
            self.constant = {i: int(y[0, i]) for i in range(y.shape[1]) if len(set(y[:, i])) < 2}
            learnable = [i for i in range(y.shape[1]) if i not in self.constant]
            self.learnable = learnable
            self.model.fit(x, y[:, learnable])
        elif self.task == "category":
            self.model = LogisticRegression(max_iter=2000, C=10.0, random_state=self.seed)
            self.model.fit(x, targets)
        else:
            self.train_x = x
            self.train_targets = list(targets)
        return self

    def predict(self, texts: list[str]) -> list:
        x = self.features.transform(texts)
        if self.task == "tagging":
            learned = self.model.predict(x)
            y = np.zeros((x.shape[0], len(self.labels)), dtype=int)
            y[:, self.learnable] = learned
            for i, value in self.constant.items():
                y[:, i] = value
            return [list(row) for row in self.binarizer.inverse_transform(y)]
        if self.task == "category":
            return list(self.model.predict(x))
        nearest = (x @ self.train_x.T).toarray().argmax(axis=1)
        return [self.train_targets[i] for i in nearest]
