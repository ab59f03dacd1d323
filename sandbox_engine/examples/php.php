<?php
echo "Enter your name: ";
$name = trim((string) fgets(STDIN));
echo "Hello $name\n";
