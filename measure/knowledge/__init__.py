"""What xlt knows about languages and the NLI task, before any measurement: the floor every
package (measure, predictor, app) may import.

* ``paths`` -- where data, published results and models are when no path is given;
* ``languages`` -- the language registry (codes, ISO 639-3, names, scripts);
* ``coverage`` -- which model saw which language in pretraining, and how much: the one rule
  behind every pretraining class and resource class;
* ``uriel`` -- URIEL distances from lang2vec's data files;
* ``nli`` -- the task's labels, chance level, datasets, pools and the zero-shot rule.
"""
