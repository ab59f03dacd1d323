<?php
// Runs before every program (auto_prepend_file). The readline extension is disabled in this image
// because libedit prints no prompt when stdin is a pipe; this readline() prompts on stdout, then
// reads a line from stdin, as the extension does on a terminal.
if (!function_exists('readline')) {
    function readline(?string $prompt = null): string|false
    {
        if ($prompt !== null) {
            echo $prompt;
        }
        $line = fgets(STDIN);
        return $line === false ? false : rtrim($line, "\r\n");
    }

    function readline_add_history(string $prompt): bool
    {
        return true;
    }
}
