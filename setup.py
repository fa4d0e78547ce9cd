"""Packaging for ``batch_processor``: one universal wheel for Python 2.7 and 3.6 to 3.15.

The distribution is ``batch-processor-graphs``; the package it installs is imported as
``batch_processor``. (``batch-processor`` on the package index is an unrelated project.)
"""
import io
import os

from setuptools import find_packages, setup

HERE = os.path.abspath(os.path.dirname(__file__))

with io.open(os.path.join(HERE, "README.rst"), encoding="utf-8") as f:
    LONG_DESCRIPTION = f.read()

setup(
    name="batch-processor-graphs",
    version="0.1.0",
    description="Asynchronous dataflow graphs of batch processors, driven from plain synchronous code",
    long_description=LONG_DESCRIPTION,
    long_description_content_type="text/x-rst",
    license="MIT",
    packages=find_packages(exclude=["ut", "ut.*", "benchmarks", "docs"]),
    package_data={"batch_processor": ["py.typed"]},
    include_package_data=True,
    zip_safe=False,
    python_requires=">=2.7, !=3.0.*, !=3.1.*, !=3.2.*, !=3.3.*, !=3.4.*, !=3.5.*",
    install_requires=[
        "six>=1.10",
        "attrs>=19.2",
        'trollius==2.2.1; python_version < "3"',
        'futures>=3.0; python_version < "3"',
        'enum34>=1.1; python_version < "3"',
    ],
    extras_require={
        "progress": ["tqdm"],
        # The demo trains scikit-learn estimators: its last 2.7 release on Python 2.
        "demo": [
            'scikit-learn>=0.20,<0.21; python_version < "3"',
            'scikit-learn>=0.20; python_version >= "3"',
        ],
        "uvloop": ['uvloop; python_version >= "3.8"'],
        "dask": ['distributed; python_version >= "3.8"'],
        "bench": ['pypeln; python_version >= "3.7"', 'aiostream; python_version >= "3.7"'],
    },
    classifiers=[
        "Programming Language :: Python :: 2",
        "Programming Language :: Python :: 2.7",
        "Programming Language :: Python :: 3",
        "Programming Language :: Python :: 3.6",
        "Programming Language :: Python :: 3.7",
        "Programming Language :: Python :: 3.8",
        "Programming Language :: Python :: 3.9",
        "Programming Language :: Python :: 3.10",
        "Programming Language :: Python :: 3.11",
        "Programming Language :: Python :: 3.12",
        "Programming Language :: Python :: 3.13",
        "Programming Language :: Python :: 3.14",
        "Programming Language :: Python :: 3.15",
        "Framework :: AsyncIO",
    ],
)
