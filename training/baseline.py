"""The classical baseline every adapter is measured against, trained on the same split.

Tags and categories: TF-IDF over word 1-2-grams and character 2-5-grams with logistic
regression (one-vs-rest for tags), its inverse regularization ``C`` and class weights chosen on the
validation split (:meth:`TfidfBaseline.tuned`): the strongest simple model, fitted on the same training
rows as the adapter, so that a win over it is a win over what a ten-line scikit-learn script reaches.
Descriptions: the description of the most similar
training title by the same TF-IDF features (nearest neighbour), the classical
retrieval answer to "describe this product".
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import numpy as np
from joblib import Parallel, delayed
from sklearn.feature_extraction.text import TfidfVectorizer
from sklearn.linear_model import LogisticRegression
from sklearn.multiclass import OneVsRestClassifier
from sklearn.pipeline import FeatureUnion
from sklearn.preprocessing import MultiLabelBinarizer
from tqdm.auto import tqdm

from catalog_lora.inference.lexical import save
from catalog_lora.retrieval.tfidf import Features, save_vectors
from catalog_lora.runs.folder import SEARCH_FILES


def _features() -> FeatureUnion:
    return FeatureUnion(
        [
            ("word", TfidfVectorizer(ngram_range=(1, 2), min_df=1, sublinear_tf=True)),
            ("char", TfidfVectorizer(analyzer="char_wb", ngram_range=(2, 5), min_df=2, sublinear_tf=True)),
        ]
    )


# What :meth:`TfidfBaseline.tuned` tries on validation: the regularization and the class weighting.
C_GRID = (1.0, 3.0, 10.0, 30.0)
CLASS_WEIGHTS = (None, "balanced")


class TfidfBaseline:
    """``fit(texts, targets)`` then ``predict(texts)``; targets are label lists, labels or descriptions.

    ``C`` and ``class_weight`` are the logistic regression's; the defaults are the settings before
    validation tuning (tags ``balanced``, categories unweighted)."""

    def __init__(self, task: str, labels: list[str] | None = None, seed: int = 42, C: float = 10.0, class_weight: str | None = "default"):
        self.task = task
        self.labels = labels
        self.seed = seed
        self.C = C
        self.class_weight = ("balanced" if task == "tagging" else None) if class_weight == "default" else class_weight
        self.features = _features()

    @classmethod
    def tuned(
        cls, task: str, labels: list[str] | None, seed: int, train: tuple[list[str], list], validation: tuple[list[str], list],
        score: Callable[[list], float], jobs: int = 1,
    ) -> TfidfBaseline:
        """The baseline whose ``C`` and class weights (``C_GRID`` x ``CLASS_WEIGHTS``) score best on ``validation``
        by ``score(predictions)`` (the task's headline metric; ties keep the earlier, more regularized one).

        The features are fitted and computed once. Each setting is fitted from zeros, as a script fitting that
        one setting would: started from the previous ``C``'s solution instead, lbfgs stopped where its gradient
        was already within ``tol`` (the ``C=10`` fit was the ``C=3`` model, no step taken), so the grid did not
        try what it named. ``jobs`` settings are fitted at once, each in its own process (lbfgs over sparse
        features keeps about one core busy). Descriptions have nothing to tune."""
        if task == "description":
            return cls(task, labels, seed).fit(*train)
        features = _features()
        x, x_validation = features.fit_transform(train[0]), features.transform(validation[0])
        settings = [(c, weight) for weight in CLASS_WEIGHTS for c in C_GRID]
        fitted = Parallel(n_jobs=min(jobs, len(settings)), return_as="generator")(  # in the grid's order
            delayed(_fit_setting)(task, labels, seed, c, weight, x, train[1]) for c, weight in settings
        )
        best, best_score = None, float("-inf")
        for candidate in tqdm(fitted, total=len(settings), desc="TF-IDF baseline: C x class weight"):
            candidate.features = features
            value = score(candidate.predict_features(x_validation))
            if value > best_score:
                best, best_score = candidate, value
        return best

    @property
    def settings(self) -> str:
        return f"C={self.C:g}, class_weight={self.class_weight or 'none'}"

    def fit(self, texts: list[str], targets: list) -> TfidfBaseline:
        return self.fit_features(self.features.fit_transform(texts), targets)

    def fit_features(self, x, targets: list) -> TfidfBaseline:
        """Fit on features already computed by ``self.features``."""
        if self.task == "tagging":
            self.binarizer = MultiLabelBinarizer(classes=self.labels)
            y = self.binarizer.fit_transform([[t for t in row if t in set(self.labels)] for row in targets])
            self.model = OneVsRestClassifier(LogisticRegression(max_iter=2000, C=self.C, class_weight=self.class_weight))
            # A label seen in every or no training row cannot be learned by a binary classifier.
            self.constant = {i: int(y[0, i]) for i in range(y.shape[1]) if len(set(y[:, i])) < 2}
            learnable = [i for i in range(y.shape[1]) if i not in self.constant]
            self.learnable = learnable
            self.model.fit(x, y[:, learnable])
        elif self.task == "category":
            self.model = LogisticRegression(max_iter=2000, C=self.C, class_weight=self.class_weight, random_state=self.seed)
            self.model.fit(x, targets)
        else:
            self.train_x = x
            self.train_targets = list(targets)
        return self

    def predict(self, texts: list[str]) -> list:
        return self.predict_features(self.features.transform(texts))

    def predict_features(self, x) -> list:
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

    def plain_features(self) -> tuple[list[Features], np.ndarray]:
        """The fitted vectorizer as :mod:`catalog_lora.retrieval.tfidf` reads it: the n-gram kinds and their idf."""
        kinds = [vectorizer for _, vectorizer in self.features.transformer_list]
        features = [Features(v.analyzer, v.ngram_range, {gram: int(i) for gram, i in v.vocabulary_.items()}) for v in kinds]
        return features, np.concatenate([v.idf_ for v in kinds])

    def save_search(self, folder: str | Path) -> list[Path]:
        """The fitted description baseline's vectorizer as a description head's word search (``SEARCH_FILES`` in
        ``folder``; catalog_lora.retrieval.tfidf.LexicalSearch), for the engine and code without scikit-learn."""
        if self.task != "description":
            raise ValueError(f"a {self.task} baseline is a model of label probabilities: save_plain saves it")
        features, idf = self.plain_features()
        return save_vectors([Path(folder) / name for name in SEARCH_FILES], features, idf, {"fitted": "TF-IDF search"}, {})

    def save_plain(self, folder: str | Path, labels: list[str]) -> list[Path]:
        """The fitted tag or category model as :mod:`catalog_lora.inference.lexical`'s two files in ``folder``,
        one row per label of ``labels`` (the adapter's taxonomy, in its order), for code without scikit-learn."""
        features, idf = self.plain_features()
        coef = np.zeros((len(labels), len(idf)))
        intercept = np.full(len(labels), -np.inf)  # a label the model never learned is never its answer
        if self.task == "tagging":
            for column, estimator in zip(self.learnable, self.model.estimators_, strict=True):
                coef[column], intercept[column] = estimator.coef_[0], estimator.intercept_[0]
            for column, value in self.constant.items():  # a tag on every training row, or on none
                intercept[column] = np.inf if value else -np.inf
        elif self.task == "category":
            weights, bias = self.model.coef_, self.model.intercept_
            if len(self.model.classes_) == 2:  # one row for two classes: softmax([-z/2, z/2]) is sigmoid(z)
                weights, bias = np.vstack([-weights / 2, weights / 2]), np.array([-bias[0] / 2, bias[0] / 2])
            for row, label in enumerate(self.model.classes_):
                coef[labels.index(label)], intercept[labels.index(label)] = weights[row], bias[row]
        else:
            raise ValueError(f"a {self.task} baseline is a nearest-neighbour search, not a model of label probabilities")
        return save(folder, features, idf, coef, intercept, self.task == "tagging", self.settings)


def _fit_setting(task: str, labels: list[str] | None, seed: int, C: float, class_weight: str | None, x, targets: list) -> TfidfBaseline:
    """One setting of :meth:`TfidfBaseline.tuned`'s grid fitted on features ``x``; a function of the module, so that a
    worker process can run it. The caller gives it the fitted features back."""
    baseline = TfidfBaseline(task, labels, seed, C=C, class_weight=class_weight).fit_features(x, targets)
    baseline.features = None
    return baseline
